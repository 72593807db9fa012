//! The readiness check of the controller's connection to the Kubernetes API server.

use kube::Client;

use crate::server::Readiness;

/// Name under which `/readyz` lists the API server check when it fails.
pub const API_SERVER_CHECK: &str = "api-server";

/// Registers a check that the API server responds to `GET /version`, a request that every
/// authenticated client may make and that reads no objects.
pub fn register_api_server_check(readiness: &Readiness, client: Client) {
    readiness.register(API_SERVER_CHECK, move || {
        let client = client.clone();
        async move {
            client.apiserver_version().await?;
            Ok(())
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::controller::mock_api::{Exchange, MockApi, status_body};

    fn version() -> serde_json::Value {
        json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.2",
            "gitCommit": "a57b6f7709f6c2722b92f07b8b4c48210a51fc40",
            "gitTreeState": "clean",
            "buildDate": "2025-06-17T18:36:15Z",
            "goVersion": "go1.24.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        })
    }

    #[tokio::test]
    async fn ready_only_when_both_respond() {
        let unavailable = status_body(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        );
        let (client, mock) = MockApi::start(
            "adgang",
            vec![
                Exchange::new(Method::GET, "/version", 200, version()),
                Exchange::new(Method::GET, "/version", 503, unavailable),
                Exchange::new(Method::GET, "/version", 200, version()),
            ],
        );
        let readiness = Readiness::new();
        let directory_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = directory_up.clone();
        readiness.register("directory", move || {
            let up = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused".into())
                }
            }
        });
        register_api_server_check(&readiness, client);
        let timeout = Duration::from_secs(5);

        let both_up = readiness.failing_checks(timeout).await;
        let api_down = readiness.failing_checks(timeout).await;
        directory_up.store(false, std::sync::atomic::Ordering::SeqCst);
        let directory_down = readiness.failing_checks(timeout).await;

        assert!(both_up.is_empty(), "{both_up:?}");
        assert_eq!(api_down, [API_SERVER_CHECK]);
        assert_eq!(directory_down, ["directory"]);
        mock.assert_done();
    }
}
