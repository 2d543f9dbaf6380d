//! The declaration in [`SETTINGS`] against everything it must agree with:
//! the `Settings` fields and their defaults, every flag of every command,
//! and README.md.

use std::collections::BTreeSet;

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;
use crate::config::Settings;

/// Flags that pick what a command does rather than set a setting, by the
/// command's path and the flag.
const COMMAND_ARGUMENTS: &[(&str, &str)] = &[("proof get", "block"), ("proof get", "prover")];

/// The fields of `Settings`, read from its derived `Debug` output (serde
/// cannot list them, and every field shows there, secrets redacted).
fn settings_fields() -> Vec<String> {
    format!("{:#?}", Settings::default())
        .lines()
        .filter_map(|line| line.strip_prefix("    "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_once(": ").map(|(field, _)| field.to_owned()))
        .collect()
}

/// The top-level `Debug` value of `field` in `settings`.
fn field_value(settings: &Settings, field: &str) -> String {
    let shown = format!("{settings:#?}");
    let prefix = format!("    {field}: ");
    shown
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no field {field} in {shown}"))
        .trim_end_matches(',')
        .to_owned()
}

fn declared_keys() -> Vec<&'static str> {
    SETTINGS.iter().filter_map(|s| s.key).collect()
}

/// The settings a flag sets.
fn declared_for_flag(flag: &str) -> Vec<&'static SettingDoc> {
    SETTINGS.iter().filter(|s| s.flag == Some(flag)).collect()
}

#[test]
fn every_settings_field_is_declared_once_and_nothing_else_is() {
    let fields: BTreeSet<String> = settings_fields().into_iter().collect();
    assert!(fields.len() > 30, "could not read the fields: {fields:?}");
    let keys = declared_keys();
    let declared: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(declared.len(), keys.len(), "a key is declared twice");
    let undeclared: Vec<_> = fields.difference(&declared).collect();
    let unknown: Vec<_> = declared.difference(&fields).collect();
    assert!(
        undeclared.is_empty() && unknown.is_empty(),
        "Settings fields missing from SETTINGS in config/keys.rs: {undeclared:?}; \
         declared keys that are no Settings field: {unknown:?}"
    );
    let envs: BTreeSet<_> = SETTINGS.iter().map(|s| s.env).collect();
    assert_eq!(
        envs.len(),
        SETTINGS.len(),
        "an environment variable is declared twice"
    );
}

/// A default shown as a value loads to exactly `Settings::default()`; one
/// shown as prose is an unset option.
#[test]
fn shown_defaults_are_the_real_defaults() {
    let defaults = Settings::default();
    let expected = format!("{defaults:?}");
    for setting in SETTINGS {
        let Some(key) = setting.key else { continue };
        match setting.default.value() {
            Some(value) => {
                let env = [(setting.env.to_owned(), value.to_owned())].into();
                let loaded = Settings::load(None, &env, vec![])
                    .unwrap_or_else(|e| panic!("{key}'s shown default {value:?}: {e}"));
                assert_eq!(
                    format!("{loaded:?}"),
                    expected,
                    "{key}: README shows the default {value:?}, Settings::default() has {}",
                    field_value(&defaults, key)
                );
            }
            None => assert_eq!(
                field_value(&defaults, key),
                "None",
                "{key}: a default shown as prose ({:?}) must be an unset option; show the value",
                setting.default
            ),
        }
    }
}

/// Every command's path below the root, with the command.
fn leaf_commands(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    if command.has_subcommands() {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_owned();
            leaf_commands(sub, &path, out);
        }
    } else {
        out.push((path.to_owned(), command.clone()));
    }
}

fn is_builtin(arg: &clap::Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

/// Flags whose help says more than the setting's meaning, for one command.
const OWN_HELP: &[(&str, &str)] = &[("proof get", "input-queue"), ("status", "json")];

/// A flag's help is the declared meaning and variables ([`flag_help`]), so
/// `--help` and README.md's tables say the same; the few with their own
/// wording still name their variables.
fn check_help(path: &str, arg: &clap::Arg, long: &str, declared: &[&SettingDoc]) {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    if OWN_HELP.contains(&(path, long)) {
        let envs: Vec<_> = declared.iter().map(|s| s.env).collect();
        let envs = envs.join(", ");
        assert!(
            help.contains(&format!("[env: {envs}]")),
            "--{long}'s help must end in [env: {envs}] as declared: {help:?}"
        );
    } else {
        assert_eq!(
            help,
            flag_help(long),
            "`{path} --{long}`'s help must come from SETTINGS (flag_help)"
        );
    }
}

/// Every flag of every command sets exactly the settings that declare it,
/// names their variables in its help, and no flag sets an undeclared key.
#[test]
fn every_flag_is_declared_and_sets_its_settings() {
    let root = Cli::command();
    let mut seen = BTreeSet::new();
    for arg in root.get_arguments().filter(|a| !is_builtin(a)) {
        let long = arg.get_long().expect("a long flag");
        let declared = declared_for_flag(long);
        assert!(
            declared.len() == 1 && declared[0].key.is_none(),
            "global --{long} must be declared once in SETTINGS, without a key"
        );
        check_help("", arg, long, &declared);
        let clap_default: Vec<_> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let shown: Vec<_> = declared[0]
            .default
            .value()
            .map(str::to_owned)
            .into_iter()
            .collect();
        assert_eq!(clap_default, shown, "--{long}'s default");
        seen.insert(long.to_owned());
    }
    let mut leaves = Vec::new();
    leaf_commands(&root, "", &mut leaves);
    assert!(leaves.len() >= 9, "{leaves:?}");
    for (path, command) in &leaves {
        let required: Vec<String> = command
            .get_arguments()
            .filter(|a| a.is_required_set())
            .flat_map(|a| {
                [
                    format!("--{}", a.get_long().expect("a long flag")),
                    "1".into(),
                ]
            })
            .collect();
        for arg in command.get_arguments().filter(|a| !is_builtin(a)) {
            let long = arg.get_long().expect("a long flag");
            if COMMAND_ARGUMENTS.contains(&(path.as_str(), long)) {
                continue;
            }
            let declared = declared_for_flag(long);
            assert!(
                !declared.is_empty(),
                "`{path} --{long}` sets no setting declared in SETTINGS (config/keys.rs)"
            );
            check_help(path, arg, long, &declared);
            let mut argv: Vec<String> = ["orchestrator"].into_iter().map(Into::into).collect();
            argv.extend(path.split(' ').map(str::to_owned));
            argv.extend(required.iter().cloned());
            if !arg.is_required_set() {
                argv.push(format!("--{long}"));
                if arg.get_action().takes_values() {
                    argv.push("1".into());
                }
            }
            let matches = Cli::command()
                .try_get_matches_from(&argv)
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let mut given: Vec<_> = crate::cli::overrides(&matches)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let mut expected: Vec<_> = declared.iter().filter_map(|s| s.key).collect();
            given.sort_unstable();
            expected.sort_unstable();
            assert_eq!(
                given, expected,
                "`{path} --{long}` sets these keys, SETTINGS says otherwise"
            );
            seen.insert(long.to_owned());
        }
    }
    for setting in SETTINGS {
        if let Some(flag) = setting.flag {
            assert!(
                seen.contains(flag),
                "--{flag} is declared but no command takes it"
            );
        }
    }
}

#[test]
fn table_rows_are_well_formed() {
    let mut previous: Option<&SettingDoc> = None;
    for setting in SETTINGS {
        let cells = [
            setting.env,
            setting.meaning,
            setting.key.unwrap_or_default(),
        ];
        assert!(
            !cells.iter().any(|c| c.contains('|') || c.contains('\n')),
            "{setting:?}"
        );
        if setting.meaning.is_empty() {
            let joins = previous.is_some_and(|p| {
                p.table == setting.table && p.flag.is_some() && p.flag == setting.flag
            });
            assert!(
                joins && setting.default == Shown::Text(""),
                "{setting:?}: an empty meaning joins the row before, so it needs that row's flag and no default"
            );
        }
        previous = Some(setting);
    }
}

/// README.md's tables with the generated header.
fn readme_tables() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let header = config_table(Table::Main).lines().next().unwrap().to_owned();
    let mut tables = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line == header {
            let mut table = format!("{line}\n");
            for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
                table.push_str(line);
                table.push('\n');
            }
            tables.push(table);
        }
    }
    tables
}

#[test]
fn readme_configuration_tables_are_generated_from_the_declaration() {
    let main = config_table(Table::Main);
    let roles = config_table(Table::Roles);
    assert!(
        readme_tables() == [main.clone(), roles.clone()],
        "README.md's two configuration tables must be exactly these, from SETTINGS in \
         src/config/keys.rs (\"Configuration\", then \"Role settings\"):\n\n{main}\n{roles}"
    );
}

#[test]
fn hand_written_tables_name_their_variables() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for setting in SETTINGS
        .iter()
        .filter(|s| matches!(s.table, Table::Nats | Table::Template | Table::EthProofs))
    {
        assert!(
            readme.contains(&format!("`{}", setting.env)),
            "README.md does not mention {} ({:?} table)",
            setting.env,
            setting.table
        );
    }
}
