//! `api_type: bedrock`: the region and the credentials a backend signs its
//! requests with (SigV4), resolved once when the config loads.
//!
//! Where the credentials come from, first match wins:
//! 1. `aws_access_key_id` + `aws_secret_access_key` (+ `aws_session_token`)
//!    in the backend's params;
//! 2. `aws_profile_name` in the params: that profile of the shared files;
//! 3. `api_key` in the params: a Bedrock API key, sent as
//!    `Authorization: Bearer` (no signing);
//! 4. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 5. `AWS_BEARER_TOKEN_BEDROCK` (a Bedrock API key);
//! 6. the profile `AWS_PROFILE` (else `default`) of `~/.aws/credentials`
//!    (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config` (`AWS_CONFIG_FILE`).
//!
//! The region: `aws_region_name`, else the profile's `region`, else
//! `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the one in an `api_base`
//! of the form `https://bedrock-runtime.<region>.amazonaws.com`.
//! Variables are read through [`Env`] (the process and `.env`).

use std::path::PathBuf;

use super::errors::{Errors, KeyPath};
use super::{Env, Secret};

/// The keys of `model_params` a Bedrock backend reads (LiteLLM's names).
#[derive(Debug, Default, Clone)]
pub struct RawAws {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region_name: Option<String>,
    pub profile_name: Option<String>,
}

/// How a Bedrock backend authenticates.
#[derive(Debug, Clone)]
pub enum BedrockCredentials {
    /// SigV4 with these keys.
    Keys {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    /// A Bedrock API key: `Authorization: Bearer`.
    Bearer(Secret),
}

/// A Bedrock backend's region and credentials, and where they came from
/// (`source`: shown by `check`, never a secret).
#[derive(Debug, Clone)]
pub struct BedrockAuth {
    pub region: String,
    pub credentials: BedrockCredentials,
    pub source: String,
}

impl BedrockAuth {
    /// The secret values (the scrubbers mask them).
    pub fn secrets(&self) -> Vec<&str> {
        match &self.credentials {
            BedrockCredentials::Keys {
                secret_access_key,
                session_token,
                ..
            } => {
                let mut v = vec![secret_access_key.expose()];
                if let Some(t) = session_token {
                    v.push(t.expose());
                }
                v
            }
            BedrockCredentials::Bearer(k) => vec![k.expose()],
        }
    }
}

/// The default `api_base` for a region.
pub fn default_api_base(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The region named in a `bedrock-runtime.<region>.amazonaws.com` URL.
fn region_of(api_base: &str) -> Option<String> {
    let host = api_base.split("://").nth(1)?.split(['/', ':']).next()?;
    let rest = host.strip_prefix("bedrock-runtime.")?;
    let region = rest.split('.').next()?;
    (!region.is_empty()).then(|| region.to_string())
}

/// One profile read from the shared files.
#[derive(Debug, Default)]
struct Profile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
}

fn home(env: &Env) -> Option<PathBuf> {
    env.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn shared_file(env: &Env, var: &str, default: &str) -> Option<PathBuf> {
    match env.get(var).filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => home(env).map(|h| h.join(".aws").join(default)),
    }
}

/// Reads `name` from the credentials file (section `[name]`) and the
/// config file (section `[profile name]`, or `[default]`); the credentials
/// file wins for keys. `Ok(None)` when neither file has the profile.
fn read_profile(env: &Env, name: &str) -> Result<Option<Profile>, String> {
    let mut found = false;
    let mut p = Profile::default();
    let load = |path: &PathBuf| -> Result<Option<ini::Ini>, String> {
        if !path.is_file() {
            return Ok(None);
        }
        ini::Ini::load_from_file(path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    if let Some(path) = shared_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
        && let Some(file) = load(&path)?
        && let Some(s) = file.section(Some(name))
    {
        found = true;
        p.access_key_id = s.get("aws_access_key_id").map(str::to_string);
        p.secret_access_key = s.get("aws_secret_access_key").map(str::to_string);
        p.session_token = s.get("aws_session_token").map(str::to_string);
        p.region = s.get("region").map(str::to_string);
    }
    if let Some(path) = shared_file(env, "AWS_CONFIG_FILE", "config")
        && let Some(file) = load(&path)?
    {
        let section = file.section(Some(format!("profile {name}"))).or_else(|| {
            (name == "default")
                .then(|| file.section(Some("default")))
                .flatten()
        });
        if let Some(s) = section {
            found = true;
            let fill = |slot: &mut Option<String>, key: &str| {
                if slot.is_none() {
                    *slot = s.get(key).map(str::to_string);
                }
            };
            fill(&mut p.access_key_id, "aws_access_key_id");
            fill(&mut p.secret_access_key, "aws_secret_access_key");
            fill(&mut p.session_token, "aws_session_token");
            fill(&mut p.region, "region");
        }
    }
    Ok(found.then_some(p))
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn keys(id: String, secret: String, token: Option<String>) -> BedrockCredentials {
    BedrockCredentials::Keys {
        access_key_id: id,
        secret_access_key: Secret::new(secret),
        session_token: nonempty(token).map(Secret::new),
    }
}

/// Resolves a Bedrock backend's region and credentials (see the module
/// doc); `api_base` is the one written, if any.
pub(super) fn resolve(
    raw: RawAws,
    api_key: Option<&str>,
    api_base: Option<&str>,
    env: &Env,
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<BedrockAuth> {
    let explicit_profile = nonempty(raw.profile_name.clone());
    let profile_name = explicit_profile
        .clone()
        .or_else(|| nonempty(env.get("AWS_PROFILE")))
        .unwrap_or_else(|| "default".to_string());
    let profile = match read_profile(env, &profile_name) {
        Ok(p) => p,
        Err(e) => {
            errors.at(at.key("aws_profile_name"), e);
            return None;
        }
    };
    if explicit_profile.is_some() && profile.is_none() {
        errors.at(
            at.key("aws_profile_name"),
            format!("profile `{profile_name}` is in neither the AWS credentials nor config file"),
        );
        return None;
    }
    let from_profile = |p: &Profile| match (&p.access_key_id, &p.secret_access_key) {
        (Some(id), Some(secret)) => Some(keys(id.clone(), secret.clone(), p.session_token.clone())),
        _ => None,
    };
    let (credentials, source) = match (nonempty(raw.access_key_id), nonempty(raw.secret_access_key))
    {
        (Some(id), Some(secret)) => (keys(id, secret, raw.session_token), "config".to_string()),
        (Some(_), None) | (None, Some(_)) => {
            errors.at(
                at.key("aws_access_key_id"),
                "aws_access_key_id and aws_secret_access_key go together",
            );
            return None;
        }
        (None, None) => {
            let env_keys = (
                nonempty(env.get("AWS_ACCESS_KEY_ID")),
                nonempty(env.get("AWS_SECRET_ACCESS_KEY")),
            );
            let profile_keys = profile.as_ref().and_then(from_profile);
            let api_key = api_key.map(str::to_string).filter(|k| !k.is_empty());
            if let (Some(_), Some(c)) = (&explicit_profile, profile_keys.clone()) {
                (c, format!("profile {profile_name}"))
            } else if let Some(k) = api_key {
                (
                    BedrockCredentials::Bearer(Secret::new(k)),
                    "api_key".to_string(),
                )
            } else if let (Some(id), Some(secret)) = env_keys {
                (
                    keys(id, secret, env.get("AWS_SESSION_TOKEN")),
                    "environment".to_string(),
                )
            } else if let Some(k) = nonempty(env.get("AWS_BEARER_TOKEN_BEDROCK")) {
                (
                    BedrockCredentials::Bearer(Secret::new(k)),
                    "AWS_BEARER_TOKEN_BEDROCK".to_string(),
                )
            } else if let Some(c) = profile_keys {
                (c, format!("profile {profile_name}"))
            } else {
                errors.at(
                    at.key("aws_access_key_id"),
                    "api_type bedrock needs credentials: aws_access_key_id and \
                     aws_secret_access_key, aws_profile_name, api_key (a Bedrock API key), \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws",
                );
                return None;
            }
        }
    };
    let region = nonempty(raw.region_name)
        .or_else(|| profile.as_ref().and_then(|p| nonempty(p.region.clone())))
        .or_else(|| nonempty(env.get("AWS_REGION")))
        .or_else(|| nonempty(env.get("AWS_DEFAULT_REGION")))
        .or_else(|| api_base.and_then(region_of));
    let Some(region) = region else {
        errors.at(
            at.key("aws_region_name"),
            "api_type bedrock needs a region: aws_region_name, AWS_REGION or AWS_DEFAULT_REGION",
        );
        return None;
    };
    if !region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        errors.at(
            at.key("aws_region_name"),
            format!("`{region}` is not a region such as us-east-1"),
        );
        return None;
    }
    Some(BedrockAuth {
        region,
        credentials,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_the_url() {
        assert_eq!(
            region_of("https://bedrock-runtime.eu-west-3.amazonaws.com").as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(region_of("http://127.0.0.1:9000"), None);
    }
}
