//! Runs a real mock binary on a temp input file and captures everything the
//! orchestrator would see: exit code, stdout, stderr and the output file.

use std::fs;
use std::process::Command;

/// What one run of a prover binary left behind.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The output file's contents, if the binary wrote one.
    pub output: Option<String>,
}

/// Runs `bin --input-path IN --output-path OUT ARGS` with IN holding `input`,
/// with only the given `MOCK_*` variables set, so the developer's shell
/// cannot change the outcome.
pub fn run(bin: &str, input: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (input_path, output_path) = (dir.path().join("in.json"), dir.path().join("out.json"));
    fs::write(&input_path, input).unwrap();
    let mut command = Command::new(bin);
    command
        .arg("--input-path")
        .arg(&input_path)
        .arg("--output-path")
        .arg(&output_path)
        .args(args);
    for var in [
        "MOCK_PROVER_NAME",
        "MOCK_PROVE_TIME_MS",
        "MOCK_FAILURE_RATE",
        "MOCK_STEPS",
    ] {
        command.env_remove(var);
    }
    let out = command.envs(env.iter().copied()).output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        output: fs::read_to_string(&output_path).ok(),
    }
}

impl Run {
    /// The output JSON of a successful run; panics with stderr otherwise.
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        self.output.as_deref().expect("exit 0 but no output file")
    }

    /// Asserts a failed run: the exit code, no output file, and one stderr
    /// line containing `message`.
    pub fn failure(&self, code: i32, message: &str) {
        assert_eq!(self.code, Some(code), "stderr: {}", self.stderr);
        assert_eq!(
            self.output, None,
            "a failed run must not leave an output file"
        );
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {}", self.stderr);
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.contains(message),
            "stderr: {}",
            self.stderr
        );
    }
}

/// Checks `json` is byte for byte `{"block":BLOCK,"proof":"0x<16 hex>","prover":"PROVER"}`
/// and returns the proof.
pub fn assert_block_proof(json: &str, block: u64, prover: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let proof = value["proof"]
        .as_str()
        .unwrap_or_else(|| panic!("no proof in {json}"))
        .to_owned();
    assert!(proof.len() == 18 && proof.starts_with("0x"), "{proof}");
    assert!(proof[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{proof}");
    assert_eq!(
        json,
        format!(r#"{{"block":{block},"proof":"{proof}","prover":"{prover}"}}"#)
    );
    proof
}
