//! Job directories left behind by an orchestrator killed with `kill -9` are
//! removed when the next runner starts on the same work dir; those of live
//! processes, and anything that is not a job directory, are kept.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use orchestrator_actors::edges::process::ProcessRunner;

fn job_dir(work: &Path, name: &str) -> std::path::PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("input.json"), b"1").unwrap();
    dir
}

#[test]
fn a_new_runner_removes_job_dirs_of_processes_that_are_gone() {
    let root = std::env::temp_dir().join(format!("orch-stale-dirs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();

    // A pid that was in use and is gone now.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    // A live process of another orchestrator sharing the work dir.
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();

    let stale = job_dir(&work, &format!("block-1.{gone_pid}.0"));
    let own_pid_earlier = job_dir(&work, &format!("block-2.{}.7", std::process::id()));
    let running = job_dir(&work, &format!("block-3.{}.0", live.id()));
    let other = job_dir(&work, "notes");
    let file = work.join(format!("block-4.{gone_pid}.1"));
    std::fs::write(&file, b"not a dir").unwrap();

    ProcessRunner::new(Path::new("sh"), work.clone(), Duration::from_secs(1)).unwrap();

    assert!(
        !stale.exists(),
        "the dir of a process that is gone is removed"
    );
    assert!(
        !own_pid_earlier.exists(),
        "a dir with this process's pid is an earlier process's: removed"
    );
    assert!(running.exists(), "the dir of a live process is kept");
    assert!(other.exists(), "what is not a job dir is kept");
    assert!(file.exists(), "a file is kept");

    let _ = live.kill();
    let _ = live.wait();
    let _ = std::fs::remove_dir_all(&root);
}
