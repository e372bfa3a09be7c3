//! Tests of `metrics.rs`: the page `/metrics` serves.

use super::*;

#[test]
fn the_page_is_the_registrys_own_exposition_written_family_by_family() {
    let m = Metrics::new().expect("metrics");
    for s in ["b-server", "a-server", "zz", "a"] {
        m.add_server(s);
    }
    m.files_uploaded.with_label_values(&["a-server"]).inc_by(3);
    m.duration.with_label_values(&["zz"]).observe(0.3);
    m.remove_server("b-server");
    let mut want = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut want)
        .expect("encode");
    // The process_* values move between two gatherings (CPU, memory, descriptors).
    let lines = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| {
                if l.starts_with("process_") {
                    l.split(' ').next().unwrap_or_default().to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect()
    };
    let got = m.render();
    assert_eq!(lines(&got), lines(&want));
    assert!(
        String::from_utf8_lossy(&got)
            .contains("outpost_files_uploaded_total{server=\"a-server\"} 3")
    );
}
