//! The deployment files must only set variables the application reads.

use std::collections::BTreeSet;
use version_app::config::Settings;

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn environment(service: &serde_yaml::Value) -> Vec<(String, String)> {
    let env = &service["environment"];
    if let Some(map) = env.as_mapping() {
        map.iter()
            .map(|(k, v)| {
                let value = match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), value)
            })
            .collect()
    } else {
        env.as_sequence()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        let (k, v) = i.as_str().unwrap().split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn compose_app_sets_only_known_settings_with_valid_values() {
    let compose = compose();
    let app = &compose["services"]["app"];
    assert!(app.is_mapping(), "an `app` service");
    let known: BTreeSet<String> = Settings::env_var_names().into_iter().collect();
    let env = environment(app);
    assert!(!env.is_empty());
    let mut figment = Settings::figment(None);
    for (key, value) in &env {
        assert!(
            known.contains(key),
            "docker-compose sets {key}, which the config does not read"
        );
        if let Some(setting) = key.strip_prefix("VERSION_APP_") {
            let parsed: figment::value::Value = value.parse().unwrap();
            figment = figment.merge((setting.to_ascii_lowercase(), parsed));
        }
    }
    let url = env
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v.clone())
        .expect("DATABASE_URL set");
    assert!(
        url.starts_with("postgres://"),
        "compose runs on PostgreSQL: {url}"
    );
    let settings = Settings::from_figment(figment.merge(("database_url", url)))
        .expect("compose settings are valid");
    assert!(
        settings.server.listen.to_string().starts_with("0.0.0.0:"),
        "listens on all interfaces inside the container"
    );
}

#[test]
fn compose_has_postgres_with_volume_and_health_checks() {
    let compose = compose();
    let services = &compose["services"];
    let db = &services["db"];
    assert!(db["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(db["healthcheck"]["test"].is_sequence(), "db health check");
    assert!(db["volumes"].is_sequence(), "db keeps its data in a volume");
    assert!(compose["volumes"].is_mapping(), "named volumes declared");
    let app = &services["app"];
    assert!(app["healthcheck"]["test"].is_sequence(), "app health check");
    assert_eq!(app["depends_on"]["db"]["condition"], "service_healthy");
    // The database name, user and password in DATABASE_URL match the db service.
    let url = environment(app)
        .into_iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .unwrap()
        .1;
    let db_env: std::collections::HashMap<String, String> = environment(db).into_iter().collect();
    assert!(
        url.contains(&format!(
            "{}:{}@db:5432/{}",
            db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"], db_env["POSTGRES_DB"]
        )),
        "{url}"
    );
}

#[test]
fn dockerfile_builds_the_binary_the_compose_file_runs() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release"));
    assert!(
        dockerfile.contains("libpq5"),
        "runtime image has the PostgreSQL client library"
    );
    let compose = compose();
    let test = compose["services"]["app"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap();
    assert!(test.iter().any(|t| t.as_str() == Some("healthcheck")));
}
