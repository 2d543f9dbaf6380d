//! Every setting, declared once: its key (TOML and internal name), its
//! environment variable, its flag, its default as shown to users and its
//! meaning. The environment mapping and README.md's two configuration tables
//! come from [`SETTINGS`]; the tests in `config/keys/tests.rs` check that the
//! `Settings` fields, their defaults, the command line's flags (and the env
//! variables their help names) and README.md agree with it.

/// Where README.md documents a setting.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The table under "Configuration", rendered by [`config_table`].
    Main,
    /// The role-settings table under "Distributed mode", rendered by
    /// [`config_table`].
    Roles,
    /// The hand-written NATS connection table (secrets have no flag).
    Nats,
    /// The hand-written template mapping ("From the original template").
    Template,
    /// The hand-written table under "EthProofs reporting" (the key has no flag).
    EthProofs,
}

/// A default as shown to users.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A value as it would be written in the environment or the TOML file;
    /// checked against `Settings::default()` (or the flag's own default).
    Value(&'static str),
    /// A value (checked like [`Shown::Value`]) and a note shown after it.
    ValueNote(&'static str, &'static str),
    /// Prose, for a default that is not one value: unset, derived, per role.
    Text(&'static str),
}

#[cfg(test)]
impl Shown {
    /// The value, when the default is one.
    pub fn value(self) -> Option<&'static str> {
        match self {
            Shown::Value(value) | Shown::ValueNote(value, _) => Some(value),
            Shown::Text(_) => None,
        }
    }

    /// As a markdown table cell.
    fn render(self) -> String {
        match self {
            Shown::Value(value) => format!("`{value}`"),
            Shown::ValueNote(value, note) => format!("`{value}` ({note})"),
            Shown::Text(text) => text.to_owned(),
        }
    }
}

/// One setting. Only `key` and `env` are read at run time; the rest is
/// for README.md and the tests that keep it, the flags and the defaults true.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    /// The `Settings` field and TOML key; `None` for the two settings the
    /// command line reads itself (`--config`, `--log-format`).
    pub key: Option<&'static str>,
    /// The environment variable.
    pub env: &'static str,
    /// The original template's variable (shown in bold).
    pub template: bool,
    /// The long flag without `--`, if the setting has one.
    pub flag: Option<&'static str>,
    /// The default as shown to users.
    pub default: Shown,
    /// One line for the README table. Empty for a setting that shares the
    /// flag of the one declared before it: it joins that one's table row.
    pub meaning: &'static str,
    /// Which README table shows it.
    pub table: Table,
}

pub use table::SETTINGS;

/// The `--help` text of `--flag`: its meaning, then the variables that set
/// it, from [`SETTINGS`] like README.md's tables. A flag nobody declared
/// gets its name back (the key tests fail on such a flag).
pub fn flag_help(flag: &str) -> String {
    let declared: Vec<&SettingDoc> = SETTINGS.iter().filter(|s| s.flag == Some(flag)).collect();
    let Some(first) = declared.first() else {
        return flag.to_owned();
    };
    let envs: Vec<&str> = declared.iter().map(|s| s.env).collect();
    let mut meaning = first.meaning.to_owned();
    if let Some(initial) = meaning.get_mut(..1) {
        initial.make_ascii_uppercase();
    }
    format!("{meaning} [env: {}]", envs.join(", "))
}

/// Every `Settings` key with its environment variable.
pub fn keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    SETTINGS
        .iter()
        .filter_map(|setting| Some((setting.key?, setting.env)))
}

/// README.md's markdown table of the settings in `table` (`Main` or
/// `Roles`), header included, each line ending in a newline. A setting with
/// an empty meaning joins the row before it.
#[cfg(test)]
pub fn config_table(table: Table) -> String {
    let mut rows: Vec<[Vec<String>; 5]> = Vec::new();
    for setting in SETTINGS.iter().filter(|s| s.table == table) {
        let env = if setting.template {
            format!("**`{}`**", setting.env)
        } else {
            format!("`{}`", setting.env)
        };
        let key = setting.key.map(|k| format!("`{k}`")).unwrap_or_default();
        match rows.last_mut() {
            Some(row) if setting.meaning.is_empty() => {
                row[1].push(env);
                row[2].push(key);
            }
            _ => rows.push([
                vec![setting.flag.map(|f| format!("`--{f}`")).unwrap_or_default()],
                vec![env],
                vec![key],
                vec![setting.default.render()],
                vec![setting.meaning.to_owned()],
            ]),
        }
    }
    let mut out = String::from(
        "| flag | environment | TOML key | default | meaning |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push('|');
        for cell in row.iter().map(|cell| cell.join(", ")) {
            if cell.is_empty() {
                out.push_str(" |");
            } else {
                out.push_str(&format!(" {cell} |"));
            }
        }
        out.push('\n');
    }
    out
}

mod table;
#[cfg(test)]
mod tests;
