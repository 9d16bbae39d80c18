//! `noom check`: validates a deployment before (or while) it runs.
//!
//! Exists so a self-hoster learns what is wrong, and how to fix it, from one
//! command instead of from a call that does not connect: the configuration,
//! the certificate (readable, parses, key matches, expiry, names), the data
//! directory, the listen ports and the relay (started on its configured ports
//! and self-tested, or, when a running noom holds them, that server's
//! `/api/relay/self-test`), and Redis for several nodes. Each finding is ok,
//! warn or FAIL, with a fix.

mod certs;
mod cluster;
mod data;
mod network;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    /// What was checked: `config`, `https`, `certificate`, `data`, `ports`, `relay`, `cluster`.
    pub area: &'static str,
    pub message: String,
    /// How to fix it, when not ok.
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn add(
        &mut self,
        level: Level,
        area: &'static str,
        message: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Finding {
            level,
            area,
            message: message.into(),
            fix,
        });
    }
    fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.add(Level::Ok, area, message, None);
    }
    fn warn(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Warn, area, message, Some(fix.into()));
    }
    fn fail(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Fail, area, message, Some(fix.into()));
    }
}

/// Prints the findings; returns whether none failed.
pub fn print(findings: &[Finding]) -> bool {
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {:<11} {}", f.area, f.message);
        if let Some(fix) = &f.fix {
            println!("      {:<11} fix: {fix}", "");
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    if failed == 0 {
        println!("no problems found ({warned} warning(s))");
    } else {
        println!("{failed} problem(s) found, {warned} warning(s)");
    }
    failed == 0
}

/// Runs every check on a configuration that loaded.
pub async fn run(config: &Config, origin: &str) -> Vec<Finding> {
    let mut r = Report::default();
    // A configuration that loaded has been validated: this cannot fail.
    let at = match config.validate() {
        Ok(at) => at,
        Err(e) => {
            r.fail("config", e.to_string(), "fix the key named");
            return r.0;
        }
    };
    r.ok("config", format!("loaded ({origin})"));
    certs::check_https(config, &at, &mut r);
    let in_use = data::check_data_dir(&config.server.data_dir, &mut r);
    data::check_admin(config, &mut r);
    let noom_running = network::check_ports(config, &at, in_use, &mut r).await;
    data::check_store(config, &at, in_use, noom_running, &mut r).await;
    network::check_relay(config, &at, noom_running, &mut r).await;
    cluster::check_cluster(config, &mut r).await;
    r.0
}
