//! Runs a real mock binary on a temp input file and captures everything the
//! orchestrator would see: exit code, stdout, stderr and the output file.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

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
        "MOCK_LOG_INTERVAL_MS",
        "MOCK_PROOF_BYTES",
        "MOCK_HELPERS",
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
    assert_block_proof_of_len(json, block, prover, 18)
}

/// [`assert_block_proof`] for a proof string of `len` characters, `0x` included.
pub fn assert_block_proof_of_len(json: &str, block: u64, prover: &str, len: usize) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let proof = value["proof"]
        .as_str()
        .unwrap_or_else(|| panic!("no proof in {}", abbreviate(json)))
        .to_owned();
    assert_proof_hex(&proof, len);
    assert!(
        json == format!(r#"{{"block":{block},"proof":"{proof}","prover":"{prover}"}}"#),
        "not the block proof of {block} by {prover}: {}",
        abbreviate(json)
    );
    proof
}

/// Checks `proof` is `0x` and lowercase hex, `len` characters in all.
pub fn assert_proof_hex(proof: &str, len: usize) {
    assert_eq!(proof.len(), len, "proof length of {}", abbreviate(proof));
    assert!(
        proof.starts_with("0x") && proof[2..].bytes().all(|b| b"0123456789abcdef".contains(&b)),
        "not 0x and lowercase hex: {}",
        abbreviate(proof)
    );
}

/// `text` cut to a length that fits in a failure message.
pub fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}
