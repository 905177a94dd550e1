//! Tests of the blob fetch window: a fake clock, no link.
use super::*;

const CHUNK: u32 = CHUNK_BYTES;

fn request(offset: u64) -> BlobRequest {
    BlobRequest {
        sha256: [1; 32],
        offset: offset * CHUNK as u64,
        len: CHUNK_BYTES,
    }
}

const RETRY: Duration = Duration::from_secs(10);

#[test]
fn the_window_counts_what_is_in_flight_and_grows_with_bandwidth_times_delay() {
    let start = Instant::now();
    let mut window = FetchWindow::new(RETRY, None, start);
    assert_eq!(window.room(start), MIN_WINDOW);
    for i in 0..MIN_WINDOW as u64 {
        window.asked(&request(i), start);
    }
    assert_eq!(window.room(start), 0);
    assert_eq!(window.in_flight(), MIN_WINDOW);
    // Answers 300 ms later: a full window per round trip, so it doubles.
    let rtt = Duration::from_millis(300);
    for i in 0..MIN_WINDOW as u64 {
        window.answered(&[1; 32], i * CHUNK as u64, CHUNK as u64, start + rtt);
    }
    assert_eq!(window.in_flight(), 0);
    assert_eq!(window.window(), 2 * MIN_WINDOW);
    assert_eq!(window.room(start + rtt), 2 * MIN_WINDOW);
    // An answer to nothing asked (a duplicate) changes nothing.
    window.answered(&[1; 32], 0, CHUNK as u64, start + rtt);
    assert_eq!(window.in_flight(), 0);
    // It never grows past the cap.
    let mut now = start + rtt;
    let mut next = 100;
    for _ in 0..10 {
        let room = window.room(now);
        let asked: Vec<u64> = (next..next + room as u64).collect();
        next += room as u64;
        for i in &asked {
            window.asked(&request(*i), now);
        }
        now += rtt;
        for i in asked {
            window.answered(&[1; 32], i * CHUNK as u64, CHUNK as u64, now);
        }
    }
    assert_eq!(window.window(), MAX_WINDOW);
    window.reset();
    assert_eq!(window.window(), MIN_WINDOW);
}

#[test]
fn a_lost_request_is_asked_again_after_quiet_or_when_overtaken() {
    let start = Instant::now();
    let mut window = FetchWindow::new(RETRY, None, start);
    window.asked(&request(0), start);
    window.asked(&request(1), start);
    // Answers keep coming: not lost yet, even past the retry time.
    let later = start + RETRY + Duration::from_secs(1);
    window.answered(
        &[1; 32],
        CHUNK as u64,
        CHUNK as u64,
        later - Duration::from_millis(10),
    );
    window.room(later);
    assert_eq!(window.skip_list(later).0, [([1; 32], 0)]);
    assert_eq!(
        window.wake_at(false, later),
        Some(later - Duration::from_millis(10) + RETRY)
    );
    // Quiet for the retry time: lost, asked again.
    let quiet = later + RETRY;
    window.room(quiet);
    assert_eq!(window.in_flight(), 0);
    // Overtaken by more than a full window of later answers: lost at once.
    window.asked(&request(0), quiet);
    for i in 1..=MAX_WINDOW as u64 + 1 {
        window.asked(&request(i), quiet);
        window.answered(&[1; 32], i * CHUNK as u64, CHUNK as u64, quiet);
    }
    window.room(quiet);
    assert_eq!(window.in_flight(), 0);
}

#[test]
fn a_blob_the_region_lacks_is_paused() {
    let start = Instant::now();
    let mut window = FetchWindow::new(RETRY, None, start);
    window.asked(&request(0), start);
    window.asked(&request(1), start);
    window.missing(&[1; 32], start);
    assert_eq!(window.in_flight(), 0);
    assert_eq!(window.skip_list(start).1, [[1; 32]]);
    assert_eq!(window.wake_at(false, start), Some(start + RETRY));
    assert!(window.skip_list(start + RETRY).1.is_empty());
}

#[test]
fn the_rate_limit_paces_requests() {
    let start = Instant::now();
    let rate = 20 * CHUNK as u64; // 20 chunks a second
    let mut window = FetchWindow::new(RETRY, Some(rate), start);
    // The bucket starts with an eighth of a second's worth.
    let burst = window.room(start);
    assert_eq!(burst, 2);
    for i in 0..burst as u64 {
        window.asked(&request(i), start);
    }
    assert_eq!(window.room(start), 0);
    let wake = window.wake_at(true, start).unwrap();
    // Two and a half chunks were there: half a chunk (25 ms) to wait for the next.
    assert_eq!(wake - start, Duration::from_millis(25));
    assert_eq!(window.room(wake), 1);
    // Over ten seconds, about rate × 10 bytes are asked for.
    let mut asked = 0u64;
    let mut now = wake;
    while now < start + Duration::from_secs(10) {
        for _ in 0..window.room(now) {
            window.asked(&request(1000 + asked), now);
            window.answered(&[1; 32], (1000 + asked) * CHUNK as u64, CHUNK as u64, now);
            asked += 1;
        }
        now = window
            .wake_at(true, now)
            .unwrap_or(now + Duration::from_millis(10));
    }
    assert!((195..=205).contains(&asked), "{asked}");
}
