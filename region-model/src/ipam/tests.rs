use super::*;

fn subnet(cidr: &str, gateway: Option<&str>) -> SubnetRecord {
    let spec: SubnetSpec = serde_json::from_value(serde_json::json!({
        "name": format!("net-{}", cidr.replace(['.', '/'], "-")),
        "cidr": cidr,
        "gateway": gateway,
    }))
    .unwrap();
    SubnetRecord {
        id: format!("id-{cidr}"),
        spec,
        ranges: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
    }
}

fn range(start: &str, end: &str, purpose: RangePurpose) -> IpRangeSpec {
    IpRangeSpec {
        start: start.parse().unwrap(),
        end: end.parse().unwrap(),
        purpose,
        comment: String::new(),
    }
}

fn with_range(mut subnet: SubnetRecord, id: &str, spec: IpRangeSpec) -> SubnetRecord {
    subnet.ranges.push(IpRangeRecord {
        id: id.into(),
        subnet_id: subnet.id.clone(),
        spec,
        created_ms: 0,
    });
    subnet
}

fn reservation(address: &str, hostname: Option<&str>) -> ReservationSpec {
    ReservationSpec {
        mac: "52:54:00:00:00:01".parse().unwrap(),
        address: address.parse().unwrap(),
        hostname: hostname.map(Into::into),
    }
}

#[test]
fn a_subnet_needs_a_sane_prefix_name_gateway_and_lease() {
    let good = subnet("10.0.0.0/24", Some("10.0.0.1")).spec;
    assert_eq!(validate_subnet(&good), Ok(()));
    let mut wide = good.clone();
    wide.cidr = "10.0.0.0/31".parse().unwrap();
    assert!(matches!(validate_subnet(&wide), Err(RuleError::Invalid(_))));
    let mut named = good.clone();
    named.name = "has space".into();
    assert!(matches!(
        validate_subnet(&named),
        Err(RuleError::Invalid(_))
    ));
    let mut gateway = good.clone();
    gateway.gateway = Some("10.0.0.255".parse().unwrap());
    assert!(matches!(
        validate_subnet(&gateway),
        Err(RuleError::Invalid(_))
    ));
    let mut lease = good;
    lease.lease_time_secs = 59;
    assert!(matches!(
        validate_subnet(&lease),
        Err(RuleError::Invalid(_))
    ));
}

#[test]
fn subnets_may_not_overlap_or_share_a_name_but_one_may_be_changed_in_place() {
    let existing = [subnet("10.0.0.0/24", None)];
    let inside = subnet("10.0.0.128/25", None).spec;
    assert!(matches!(
        check_subnet_fits(&inside, &existing, None),
        Err(RuleError::Conflict(_))
    ));
    assert_eq!(
        check_subnet_fits(&existing[0].spec, &existing, Some(&existing[0].id)),
        Ok(())
    );
    let mut same_name = subnet("10.1.0.0/24", None).spec;
    same_name.name = existing[0].spec.name.clone();
    assert!(matches!(
        check_subnet_fits(&same_name, &existing, None),
        Err(RuleError::Conflict(_))
    ));
    assert_eq!(
        check_subnet_fits(&subnet("10.1.0.0/24", None).spec, &existing, None),
        Ok(())
    );
}

#[test]
fn a_subnet_cannot_shrink_away_from_its_ranges() {
    let current = with_range(
        subnet("10.0.0.0/24", None),
        "r1",
        range("10.0.0.200", "10.0.0.250", RangePurpose::Dynamic),
    );
    let mut smaller = current.spec.clone();
    smaller.cidr = "10.0.0.0/25".parse().unwrap();
    assert!(matches!(
        check_subnet_update(&smaller, &current),
        Err(RuleError::Conflict(_))
    ));
    assert_eq!(check_subnet_update(&current.spec, &current), Ok(()));
}

#[test]
fn ranges_stay_inside_spare_the_gateway_and_do_not_overlap() {
    let net = subnet("10.0.0.0/24", Some("10.0.0.1"));
    let dynamic = |a, b| range(a, b, RangePurpose::Dynamic);
    assert_eq!(
        check_range(&net, &dynamic("10.0.0.10", "10.0.0.20"), None),
        Ok(())
    );
    // Network and broadcast addresses are not host addresses.
    assert!(check_range(&net, &dynamic("10.0.0.0", "10.0.0.20"), None).is_err());
    assert!(check_range(&net, &dynamic("10.0.0.10", "10.0.0.255"), None).is_err());
    assert!(check_range(&net, &dynamic("10.0.0.20", "10.0.0.10"), None).is_err());
    // A dynamic range may not hand out the gateway; a reserved one may hold it.
    assert!(check_range(&net, &dynamic("10.0.0.1", "10.0.0.5"), None).is_err());
    let reserved = range("10.0.0.1", "10.0.0.5", RangePurpose::Reserved);
    assert_eq!(check_range(&net, &reserved, None), Ok(()));
    let net = with_range(net, "r1", dynamic("10.0.0.10", "10.0.0.20"));
    assert!(matches!(
        check_range(&net, &dynamic("10.0.0.20", "10.0.0.30"), None),
        Err(RuleError::Conflict(_))
    ));
    // Changing r1 itself does not overlap r1.
    assert_eq!(
        check_range(&net, &dynamic("10.0.0.15", "10.0.0.30"), Some("r1")),
        Ok(())
    );
}

#[test]
fn reservations_sit_outside_dynamic_ranges_and_off_the_gateway() {
    let net = with_range(
        subnet("10.0.0.0/24", Some("10.0.0.1")),
        "r1",
        range("10.0.0.100", "10.0.0.199", RangePurpose::Dynamic),
    );
    assert_eq!(
        check_reservation(&net, &reservation("10.0.0.20", Some("node-1"))),
        Ok(())
    );
    assert!(matches!(
        check_reservation(&net, &reservation("10.0.0.150", None)),
        Err(RuleError::Conflict(_))
    ));
    assert!(matches!(
        check_reservation(&net, &reservation("10.0.0.1", None)),
        Err(RuleError::Conflict(_))
    ));
    assert!(matches!(
        check_reservation(&net, &reservation("10.0.1.5", None)),
        Err(RuleError::Invalid(_))
    ));
    assert!(matches!(
        check_reservation(&net, &reservation("10.0.0.20", Some("-bad"))),
        Err(RuleError::Invalid(_))
    ));
}

#[test]
fn a_dynamic_range_may_not_swallow_a_reservation() {
    let held = ReservationRecord {
        id: "res".into(),
        subnet_id: "net".into(),
        spec: reservation("10.0.0.50", None),
        created_ms: 0,
    };
    let over = range("10.0.0.40", "10.0.0.60", RangePurpose::Dynamic);
    assert!(matches!(
        check_range_spares_reservations(&over, std::slice::from_ref(&held)),
        Err(RuleError::Conflict(_))
    ));
    let reserved = range("10.0.0.40", "10.0.0.60", RangePurpose::Reserved);
    assert_eq!(check_range_spares_reservations(&reserved, &[held]), Ok(()));
}
