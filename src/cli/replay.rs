//! `yallmp replay`: resend a logged request (from a log file, or from the
//! database with `--id`), or print it as curl.

use std::process::ExitCode;

use super::{Cli, ReplayArgs, StreamMode, load, runtime};

/// Reads the logged request, prepares it with the flags, then prints or
/// sends it; exit 0 on a 2xx answer.
pub(super) fn replay(cli: &Cli, args: &ReplayArgs) -> ExitCode {
    use crate::replay;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let logged = match (&args.logfile, &args.id) {
            (Some(path), id) => match crate::reqlog::file::read_request_in(path, id.as_deref()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            (None, Some(id)) => {
                let config = match load(cli) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                if let Some(found) = from_segments(&config, id) {
                    match found {
                        Ok(l) => l,
                        Err(code) => return code,
                    }
                } else {
                    let db = match crate::reqlog::db::Db::connect(&config.database.target).await {
                        Ok(db) => db,
                        Err(e) => {
                            eprintln!(
                                "error: database ({}): {e}",
                                config.database.target.describe()
                            );
                            return ExitCode::FAILURE;
                        }
                    };
                    match db.fetch_request(id).await {
                        Ok(Some(l)) => l,
                        Ok(None) => {
                            eprintln!("error: no logged request with id {id}");
                            return ExitCode::FAILURE;
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            (None, None) => {
                eprintln!("error: give a log file or --id");
                return ExitCode::FAILURE;
            }
        };
        let opts = replay::Options {
            base_url: args.base_url.clone(),
            model: args.model.clone(),
            stream: match args.stream_mode {
                StreamMode::On => Some(true),
                StreamMode::Off => Some(false),
                StreamMode::AsLogged => None,
            },
            timeout: args
                .timeout
                .filter(|t| *t > 0.0)
                .map(std::time::Duration::from_secs_f64),
            api_key: args.api_key.clone(),
        };
        let prepared = match replay::prepare(&logged, &opts) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if args.print_curl {
            println!("{}", replay::curl(&prepared));
            return ExitCode::SUCCESS;
        }
        if args.dry_run {
            print!("{}", replay::describe(&prepared));
            return ExitCode::SUCCESS;
        }
        let mut out = std::io::stdout();
        match replay::send(&prepared, opts.timeout, &mut out).await {
            Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// With no database for the log and its files in segments, the record `id`
/// from the newest segments (bounded: `segments::FIND_MAX_FILES`); `None`
/// when the database is where to look.
fn from_segments(
    config: &crate::config::Config,
    id: &str,
) -> Option<Result<crate::reqlog::file::LoggedRequest, ExitCode>> {
    let logging = &config.logging;
    let dir = logging.files_dir.as_ref()?;
    if logging.database || logging.layout != crate::config::FileLayout::Segments {
        return None;
    }
    let found = match crate::reqlog::segments::find(dir, id) {
        Ok(Some((path, text))) => {
            crate::reqlog::file::read_request_text(&path.display().to_string(), &text)
                .map_err(|e| e.to_string())
        }
        Ok(None) => Err(format!(
            "no logged request with id {id} in the newest {} segments under {}",
            crate::reqlog::segments::FIND_MAX_FILES,
            dir.display()
        )),
        Err(e) => Err(format!(
            "reading the log segments under {}: {e}",
            dir.display()
        )),
    };
    Some(found.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    }))
}
