//! `yallmp db migrate|rollback|current|history`: the request-log
//! database's schema.

use std::process::ExitCode;

use super::{Cli, DbAction, load, runtime};

/// Connects to the configured database and runs `action` on its migrations.
pub(super) fn db(cli: &Cli, action: DbAction) -> ExitCode {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let target = &config.database.target;
        let db = match crate::reqlog::db::Db::connect(target).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: database ({}): {e}", target.describe());
                return ExitCode::FAILURE;
            }
        };
        let result = match action {
            DbAction::Migrate => db
                .migrate()
                .await
                .map(|_| println!("migrated: {}", target.describe())),
            DbAction::Rollback => db.rollback().await.map(|v| match v {
                Some(v) => println!("rolled back migration {v}"),
                None => println!("nothing to roll back"),
            }),
            DbAction::Current => {
                db.migrations()
                    .await
                    .map(|m| match m.iter().rev().find(|m| m.applied) {
                        Some(m) => println!("{} {}", m.version, m.description),
                        None => println!("no migration applied"),
                    })
            }
            DbAction::History => db.migrations().await.map(|m| {
                for m in m {
                    let state = if m.applied { "applied" } else { "pending" };
                    println!("{} {:<8} {}", m.version, state, m.description);
                }
            }),
        };
        db.close().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
