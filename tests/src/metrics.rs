//! Reading Prometheus text exposition in assertions.

/// The value of the unlabelled sample `name` (0 when absent).
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The value of the sample `name` whose labels contain `label`, e.g.
/// `source="intent"` (0 when absent).
pub fn labelled(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}
