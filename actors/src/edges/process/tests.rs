//! The child-process edge against real shell provers: the contract, failures,
//! timeouts that kill whole process groups and escaped helpers, streamed output.

use super::*;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn runner(dir: &Path, body: &str, timeout_ms: u64) -> ProcessRunner {
    let bin = script(dir, "prover.sh", body);
    ProcessRunner::new(&bin, dir.join("work"), Duration::from_millis(timeout_ms)).unwrap()
}

fn job(input: &[u8]) -> Job {
    Job {
        id: "block-1".into(),
        input: input.to_vec(),
        slot: 0,
        gpu: None,
    }
}

/// A fresh directory, removed when the test ends.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("orch-process-test-{name}-"))
        .tempdir()
        .unwrap()
}

#[tokio::test]
async fn contract_input_is_passed_byte_for_byte() {
    let tmp = temp_dir("ok");
    let dir = tmp.path();
    let r = runner(dir, r#"cp "$2" "$4""#, 5000);
    assert_eq!(r.run(&job(b"23839700")).await.unwrap(), b"23839700");
    let work = dir.join("work");
    assert!(emptied(&work).await, "job dir left behind");
    // Files the prover leaves beside its output go with the job dir.
    let messy = runner(
        dir,
        r#"cp "$2" "$4.tmp"; mkdir "$4.d"; mv "$4.tmp" "$4""#,
        5000,
    );
    assert_eq!(messy.run(&job(b"1")).await.unwrap(), b"1");
    assert!(
        emptied(&work).await,
        "job dir with the prover's files left behind"
    );
}

#[tokio::test]
async fn runners_sharing_a_work_dir_never_share_a_job_dir() {
    // The first job's files are still being removed when the second job,
    // of another runner and with the same id, makes its directory.
    let tmp = temp_dir("shared");
    let dir = tmp.path();
    let body = r#"sleep 0.2; cp "$2" "$4""#;
    let (first, second) = (runner(dir, body, 5000), runner(dir, body, 5000));
    assert_eq!(first.run(&job(b"1")).await.unwrap(), b"1");
    assert_eq!(second.run(&job(b"2")).await.unwrap(), b"2");
    assert!(emptied(&dir.join("work")).await, "job dir left behind");
}

/// Polls `condition` until it holds, up to `limit`; whether it did.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Whether `work` becomes empty within 10 s: a job's files are removed by
/// a task of their own once its output is read, so just after the job.
async fn emptied(work: &Path) -> bool {
    eventually(Duration::from_secs(10), || {
        std::fs::read_dir(work).unwrap().next().is_none()
    })
    .await
}

#[tokio::test]
async fn exit_codes_signals_and_output_map_to_failures() {
    let tmp = temp_dir("fail");
    let dir = tmp.path();
    let exit = runner(dir, "echo boom >&2; exit 3", 5000)
        .run(&job(b"1"))
        .await
        .unwrap_err();
    assert_eq!(
        exit,
        JobFailure::Exit {
            code: 3,
            stderr: "boom".into()
        }
    );
    let killed = runner(dir, "kill -9 $$", 5000)
        .run(&job(b"1"))
        .await
        .unwrap_err();
    assert!(
        matches!(killed, JobFailure::Killed { signal: 9, .. }),
        "{killed:?}"
    );
    assert!(killed.needs_new_worker());
    let missing = runner(dir, "exit 0", 5000)
        .run(&job(b"1"))
        .await
        .unwrap_err();
    assert_eq!(missing, JobFailure::MissingOutput);
    let invalid = runner(dir, r#"echo '{oops' > "$4""#, 5000)
        .run(&job(b"1"))
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, JobFailure::InvalidOutput { .. }),
        "{invalid:?}"
    );
}

/// Runs `body` (which writes a process's pid to the file named by its
/// `{pidfile}`) past a short job timeout, then asserts that process is
/// gone soon after; kills it if not, so a red test leaves nothing behind.
async fn a_timed_out_job_leaves_no(what: &str, name: &str, body: &str) {
    let tmp = temp_dir(name);
    let dir = tmp.path();
    let pidfile = dir.join("process.pid");
    let body = body.replace("{pidfile}", &pidfile.display().to_string());
    // Kept until the end: dropping it sets off its watchdog, which would
    // kill the process whatever the job's own cleanup did.
    let runner = runner(dir, &body, 1000);
    let failure = runner.run(&job(b"1")).await.unwrap_err();
    assert!(matches!(failure, JobFailure::Timeout { .. }), "{failure:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = eventually(Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        stat.map_or(true, |s| s.contains(") Z "))
    })
    .await;
    if !gone {
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(gone, "{what} {pid} outlived its job");
    drop(runner);
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let body = "sleep 30 & echo $! > {pidfile}; wait";
    a_timed_out_job_leaves_no("the grandchild", "timeout", body).await;
}

#[tokio::test]
async fn a_prover_logging_long_after_start_is_read_to_the_end() {
    let tmp = temp_dir("chatty");
    let dir = tmp.path();
    // Past the old 2-second read window, on both pipes, then the output.
    let chatter = r#"i=0; while [ $i -lt 30 ]; do echo "out $i"; echo "err $i" >&2; sleep 0.1; i=$((i+1)); done
        echo "last words" >&2"#;
    let r = runner(dir, &format!(r#"{chatter}; cp "$2" "$4""#), 20_000);
    assert_eq!(r.run(&job(b"7")).await.unwrap(), b"7");
    let failing = runner(dir, &format!("{chatter}; exit 1"), 20_000);
    let JobFailure::Exit { stderr, .. } = failing.run(&job(b"7")).await.unwrap_err() else {
        panic!("expected an exit failure");
    };
    assert!(stderr.ends_with("err 29\nlast words"), "{stderr}");
}

#[tokio::test]
async fn megabytes_of_output_keep_a_bounded_tail() {
    let tmp = temp_dir("flood");
    let dir = tmp.path();
    let body = r#"head -c 20000000 /dev/zero | tr '\0' 'x'; yes progress | head -n 200000 >&2; echo done >&2; exit 1"#;
    let failure = runner(dir, body, 60_000).run(&job(b"1")).await.unwrap_err();
    let JobFailure::Exit { stderr, .. } = failure else {
        panic!("expected an exit failure, got {failure:?}");
    };
    assert!(stderr.len() <= 2048, "tail of {} bytes", stderr.len());
    assert!(stderr.ends_with("progress\ndone"), "{stderr}");
}

#[tokio::test]
async fn the_child_sees_only_its_gpu() {
    let tmp = temp_dir("gpu");
    let dir = tmp.path();
    let r = runner(dir, r#"printf '"%s"' "$CUDA_VISIBLE_DEVICES" > "$4""#, 5000);
    let on_gpu = Job {
        gpu: Some("3".into()),
        ..job(b"1")
    };
    assert_eq!(r.run(&on_gpu).await.unwrap(), br#""3""#);
    let inherited = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    assert_eq!(
        r.run(&job(b"1")).await.unwrap(),
        format!("\"{inherited}\"").as_bytes()
    );
}

#[tokio::test]
async fn a_helper_that_left_the_process_group_dies_with_the_job() {
    let body = "setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' & sleep 30";
    a_timed_out_job_leaves_no("the setsid helper", "setsid", body).await;
}

#[tokio::test]
async fn a_helper_is_found_after_hundreds_of_processes_came_and_went() {
    // More pids handed out during the job than are probed one by one, so
    // the job's end lists /proc instead.
    let body = "setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' & \
                i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i + 1)); done; sleep 30";
    a_timed_out_job_leaves_no("the setsid helper", "setsid-busy", body).await;
}

#[test]
fn unusable_binaries_are_refused_at_start() {
    let tmp = temp_dir("bins");
    let dir = tmp.path();
    let missing = ProcessRunner::new(&dir.join("nope"), dir.to_path_buf(), Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(missing, BinaryError::NotFound(_)));
    let plain = dir.join("plain");
    std::fs::write(&plain, "x").unwrap();
    let not_exec =
        ProcessRunner::new(&plain, dir.to_path_buf(), Duration::from_secs(1)).unwrap_err();
    assert!(not_exec.to_string().contains("chmod +x"), "{not_exec}");
    assert!(ProcessRunner::new(Path::new("sh"), dir.to_path_buf(), Duration::from_secs(1)).is_ok());
}

/// Polls until `child` has exited, up to `limit`; whether it did.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// What `kill -9` of the orchestrator does to the watchdog's pipe, done by
/// dropping it: the processes carrying the owner token die, whatever their
/// process group; a process without it is left alone.
#[test]
fn a_dropped_watchdog_kills_the_processes_carrying_its_token() {
    use std::os::unix::process::CommandExt;
    let watchdog = Watchdog::start();
    let sleep = |owner: Option<&str>| {
        let mut command = std::process::Command::new("sleep");
        command.arg("30").process_group(0);
        if let Some(token) = owner {
            command.env(OWNER_VAR, token);
        }
        command.spawn().unwrap()
    };
    let mut owned = sleep(Some(watchdog.token()));
    let mut other = sleep(Some("someone-else"));
    let mut untagged = sleep(None);
    drop(watchdog);
    let died = exits_within(&mut owned, Duration::from_secs(10));
    let others_lived = !exits_within(&mut other, Duration::from_millis(200))
        && untagged.try_wait().unwrap().is_none();
    for child in [&mut owned, &mut other, &mut untagged] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        died,
        "a process with the owner token outlived the watchdog's trigger"
    );
    assert!(
        others_lived,
        "the watchdog killed a process that is not its owner's"
    );
}
