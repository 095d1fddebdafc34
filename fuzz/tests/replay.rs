//! Every committed corpus and regression file through its target, on a plain stable build
//! (`cargo test --no-default-features`): the fuzz targets' invariants as a regression test.

use std::path::Path;

#[test]
fn corpus_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, target) in palisade_fuzz::TARGETS {
        let mut files = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            let mut paths: Vec<_> = entries.map(|e| e.expect("a directory entry").path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).expect("reading a corpus file");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "target {name} fails on {}", path.display());
                files += 1;
            }
        }
        assert!(files > 0, "target {name} has no corpus");
        eprintln!("{name}: {files} files");
    }
}
