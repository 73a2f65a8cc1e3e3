//! What a check costs on the command line: errors refuse the call (exit 2, nothing sent),
//! warnings are printed one line each as `warning: …` and the call is sent, unless strict.
//!
//! The wording of every rule is the library's ([`bitrix24::Finding::message`]); this module
//! only puts the flag's name in front of it.

use bitrix24::{Finding, Report, Severity};

/// `FLAG: path: message` for one finding, `flag` naming the flag that set it.
pub fn line(finding: &Finding, flag: &dyn Fn(&Finding) -> String) -> String {
    let flag = flag(finding);
    if finding.path.is_empty() {
        format!("{flag}: {}", finding.message)
    } else {
        format!("{flag}: {}: {}", finding.path, finding.message)
    }
}

/// `flag: finding`, once for each line when a check found several things.
pub fn flagged(flag: &str, message: &str) -> String {
    message
        .lines()
        .map(|line| format!("{flag}: {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Refuses the call when the report has errors (or warnings, when `strict`), with one line
/// per refusing finding; otherwise prints each warning on stderr and lets the call go.
pub fn admit(
    report: &Report,
    strict: bool,
    flag: &dyn Fn(&Finding) -> String,
) -> Result<(), String> {
    admit_quietly(report, strict, flag)?;
    for finding in &report.warnings {
        warn(&line(finding, flag));
    }
    Ok(())
}

/// [`admit`] without printing the warnings, for a caller that shows them its own way.
pub fn admit_quietly(
    report: &Report,
    strict: bool,
    flag: &dyn Fn(&Finding) -> String,
) -> Result<(), String> {
    if report.refuses(strict) {
        let refusing: Vec<&Finding> = if strict {
            report.findings().collect()
        } else {
            report.errors.iter().collect()
        };
        let lines: Vec<String> = refusing
            .iter()
            .map(|f| match f.severity {
                Severity::Error => line(f, flag),
                Severity::Warning => format!("{} (a warning, refused: --strict)", line(f, flag)),
            })
            .collect();
        return Err(lines.join("\n"));
    }
    Ok(())
}

/// A tag going out over a webhook, where the portal drops TAG and SUB_TAG (the notification
/// is still created): the library's warning `notify.tag.webhook`, shown or (with `strict`)
/// refused like every other finding.
pub fn webhook_tag(
    request: &bitrix24::Request,
    portal: &bitrix24::Portal,
    strict: bool,
    flag: &dyn Fn(&Finding) -> String,
) -> Result<(), String> {
    let finding = bitrix24::notify::webhook_tag_finding(request, portal);
    admit(&Report::from_findings(finding), strict, flag)
}

/// `warning: …` on stderr.
pub fn warn(line: &str) {
    crate::output::note(&format!("warning: {line}"));
}

/// The parts of a notification every front end (OPI, `notify send`, bulk) gives.
#[derive(Debug, Default, Clone)]
pub struct Notification {
    pub system: bool,
    pub user: u64,
    pub text: String,
    pub tag: Option<String>,
    pub sub_tag: Option<String>,
    pub message_out: Option<String>,
    pub client_id: Option<String>,
    pub attach: Option<bitrix24::Attach>,
}

impl Notification {
    /// The library's client-free builder's findings and request (`Err` when it refuses).
    pub fn build(self, strict: bool) -> (Report, Result<bitrix24::Request, bitrix24::Error>) {
        let some = |v: Option<String>| v.filter(|v| !v.is_empty());
        macro_rules! build {
            ($builder:expr) => {{
                let mut b = $builder.strict(strict);
                if let Some(v) = some(self.tag) {
                    b = b.tag(v);
                }
                if let Some(v) = some(self.sub_tag) {
                    b = b.sub_tag(v);
                }
                if let Some(v) = some(self.message_out) {
                    b = b.message_out(v);
                }
                if let Some(v) = some(self.client_id) {
                    b = b.client_id(v);
                }
                if let Some(attach) = self.attach {
                    b = b.attach(attach);
                }
                (b.check(), b.to_request())
            }};
        }
        if self.system {
            build!(bitrix24::notify::System::new(self.user, self.text))
        } else {
            build!(bitrix24::notify::Personal::new(self.user, self.text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_always_refuse_warnings_only_when_strict() {
        let flag = |f: &Finding| f.field.to_lowercase();
        let report = bitrix24::Attach::review_json(&serde_json::json!([
            {"DELIMITER": true},
            {"MESSAGE": "x"}
        ]));
        assert_eq!(admit_quietly(&report, false, &flag), Ok(()));
        let e = admit_quietly(&report, true, &flag).unwrap_err();
        assert!(e.starts_with("attach: blocks[0].DELIMITER: "), "{e}");
        assert!(e.ends_with("(a warning, refused: --strict)"), "{e}");
        let bare = bitrix24::Attach::review_json(&serde_json::json!({"MESSAGE": "bare"}));
        let e = admit_quietly(&bare, false, &flag).unwrap_err();
        assert!(
            e.starts_with("attach: ") && !e.contains("refused: --strict"),
            "{e}"
        );
    }
}
