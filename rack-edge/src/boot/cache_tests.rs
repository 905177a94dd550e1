//! Tests of the boot cache: chunks in any order, resume, verification.

use super::*;
use edgemetal_protocol::BootResourceKind;

const CHUNK: usize = CHUNK_BYTES as usize;

fn resource(content: &[u8]) -> BootResource {
    BootResource {
        name: "ephemeral".into(),
        architecture: "amd64".into(),
        kind: BootResourceKind::Kernel,
        sha256: Sha256::digest(content).into(),
        size: content.len() as u64,
    }
}

fn chunk(resource: &BootResource, content: &[u8], from: usize, to: usize) -> BlobChunk {
    BlobChunk {
        sha256: resource.sha256,
        offset: from as u64,
        data: content[from..to].to_vec(),
        total: content.len() as u64,
    }
}

/// Chunk `index` of `content`, whole.
fn piece(resource: &BootResource, content: &[u8], index: usize) -> BlobChunk {
    let from = index * CHUNK;
    chunk(resource, content, from, (from + CHUNK).min(content.len()))
}

/// `chunks` chunks and a bit of content that differs from chunk to chunk.
fn blob(chunks: usize) -> Vec<u8> {
    (0..chunks * CHUNK - 1000)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect()
}

fn offsets(requests: &[BlobRequest]) -> Vec<u64> {
    requests.iter().map(|r| r.offset / CHUNK as u64).collect()
}

#[test]
fn chunks_in_any_order_complete_only_when_all_are_there_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let content = blob(5);
    let wanted = vec![resource(&content)];
    let cache = BootCache::open(dir.path()).unwrap();
    assert_eq!(
        offsets(&cache.missing(&wanted, 10, |_, _| false)),
        [0, 1, 2, 3, 4]
    );
    for index in [3, 0, 4, 1] {
        let outcome = cache.apply(&piece(&wanted[0], &content, index), &wanted);
        assert_eq!(outcome.unwrap(), ChunkOutcome::Stored);
    }
    assert!(cache.ready_path(&wanted[0].sha256).is_none());
    assert_eq!(offsets(&cache.missing(&wanted, 10, |_, _| false)), [2]);
    // Asked already: left out.
    assert!(cache
        .missing(&wanted, 10, |_, o| o == 2 * CHUNK as u64)
        .is_empty());
    assert_eq!(
        cache.progress(&wanted)[0].cached,
        content.len() as u64 - CHUNK as u64
    );
    // A duplicate changes nothing.
    let again = cache.apply(&piece(&wanted[0], &content, 3), &wanted);
    assert_eq!(again.unwrap(), ChunkOutcome::Ignored);
    let last = cache.apply(&piece(&wanted[0], &content, 2), &wanted);
    assert_eq!(last.unwrap(), ChunkOutcome::Complete);
    let served = std::fs::read(cache.ready_path(&wanted[0].sha256).unwrap()).unwrap();
    assert_eq!(served, content);
    assert!(cache.missing(&wanted, 10, |_, _| false).is_empty());
    assert!(cache.progress(&wanted)[0].ready);
    // Nothing left in partial/.
    assert_eq!(
        std::fs::read_dir(dir.path().join("boot-cache/partial"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn pieces_that_are_not_whole_chunks_or_of_another_size_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let content = blob(3);
    let wanted = vec![resource(&content)];
    let cache = BootCache::open(dir.path()).unwrap();
    let cases = [
        chunk(&wanted[0], &content, 0, 1000),
        chunk(&wanted[0], &content, 1000, 1000 + CHUNK),
        BlobChunk {
            total: content.len() as u64 + 1,
            ..piece(&wanted[0], &content, 0)
        },
        BlobChunk {
            sha256: [9; 32],
            ..piece(&wanted[0], &content, 0)
        },
    ];
    for case in cases {
        assert_eq!(cache.apply(&case, &wanted).unwrap(), ChunkOutcome::Ignored);
    }
    let missing = BlobChunk {
        data: Vec::new(),
        total: 0,
        ..piece(&wanted[0], &content, 0)
    };
    assert_eq!(
        cache.apply(&missing, &wanted).unwrap(),
        ChunkOutcome::Missing
    );
    assert_eq!(cache.progress(&wanted)[0].cached, 0);
}

#[test]
fn a_restart_resumes_from_the_synced_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = SYNC_EVERY as usize + 6;
    let content = blob(chunks);
    let wanted = vec![resource(&content)];
    {
        let cache = BootCache::open(dir.path()).unwrap();
        // Backwards, so the hash prefix never grows before the restart.
        for index in (1..=SYNC_EVERY as usize + 2).rev() {
            cache
                .apply(&piece(&wanted[0], &content, index), &wanted)
                .unwrap();
        }
    }
    // The first SYNC_EVERY were synced with their bitmap; the last two were
    // written but not recorded, so they are fetched again.
    let cache = BootCache::open(dir.path()).unwrap();
    let missing = offsets(&cache.missing(&wanted, 100, |_, _| false));
    let mut expected = vec![0, 1, 2];
    expected.extend(SYNC_EVERY as u64 + 3..chunks as u64);
    assert_eq!(missing, expected);
    for index in missing {
        cache
            .apply(&piece(&wanted[0], &content, index as usize), &wanted)
            .unwrap();
    }
    assert!(cache.ready_path(&wanted[0].sha256).is_some());
    let served = std::fs::read(cache.ready_path(&wanted[0].sha256).unwrap()).unwrap();
    assert_eq!(served, content);
}

#[test]
fn a_partial_file_from_an_in_order_build_resumes_from_its_whole_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let content = blob(4);
    let wanted = vec![resource(&content)];
    let partial = dir.path().join("boot-cache/partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(
        partial.join(hex::encode(wanted[0].sha256)),
        &content[..2 * CHUNK + 10],
    )
    .unwrap();
    let cache = BootCache::open(dir.path()).unwrap();
    assert_eq!(offsets(&cache.missing(&wanted, 10, |_, _| false)), [2, 3]);
    assert_eq!(
        cache.next_request(&wanted).unwrap().offset,
        2 * CHUNK as u64
    );
    for index in [3, 2] {
        cache
            .apply(&piece(&wanted[0], &content, index), &wanted)
            .unwrap();
    }
    assert!(cache.ready_path(&wanted[0].sha256).is_some());
}

#[test]
fn corrupt_content_is_discarded_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let content = blob(3);
    let wanted = vec![resource(&content)];
    let cache = BootCache::open(dir.path()).unwrap();
    let mut bad = piece(&wanted[0], &content, 1);
    bad.data[50] ^= 1;
    for chunk in [piece(&wanted[0], &content, 2), bad] {
        assert_eq!(cache.apply(&chunk, &wanted).unwrap(), ChunkOutcome::Stored);
    }
    let outcome = cache.apply(&piece(&wanted[0], &content, 0), &wanted);
    assert_eq!(outcome.unwrap(), ChunkOutcome::Corrupt);
    assert!(cache.ready_path(&wanted[0].sha256).is_none());
    assert_eq!(
        offsets(&cache.missing(&wanted, 10, |_, _| false)),
        [0, 1, 2]
    );
    for index in 0..3 {
        cache
            .apply(&piece(&wanted[0], &content, index), &wanted)
            .unwrap();
    }
    let served = std::fs::read(cache.ready_path(&wanted[0].sha256).unwrap()).unwrap();
    assert_eq!(served, content);
}

#[test]
fn unwanted_blobs_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let content = vec![1u8; 10];
    let wanted = vec![resource(&content)];
    let cache = BootCache::open(dir.path()).unwrap();
    cache
        .apply(&chunk(&wanted[0], &content, 0, 10), &wanted)
        .unwrap();
    let other = blob(2);
    let partial = vec![resource(&other)];
    cache
        .apply(&piece(&partial[0], &other, 1), &partial)
        .unwrap();
    cache.prune(&wanted).unwrap();
    assert!(cache.ready_path(&wanted[0].sha256).is_some());
    assert_eq!(
        std::fs::read_dir(dir.path().join("boot-cache/partial"))
            .unwrap()
            .count(),
        0
    );
    cache.prune(&[]).unwrap();
    assert!(cache.ready_path(&wanted[0].sha256).is_none());
}
