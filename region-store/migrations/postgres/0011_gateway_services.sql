-- Which gateway services (syslog relay, caching proxy, NTP) each subnet's
-- machines get from its racks: JSON {"syslog":bool,"proxy":bool,"ntp":bool}.
ALTER TABLE subnets ADD COLUMN services_json TEXT NOT NULL DEFAULT '{"syslog":true,"proxy":true,"ntp":true}';
