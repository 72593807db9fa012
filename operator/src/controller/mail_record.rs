//! The controller's record of sent mail, kept as JSON in the ConfigMap `adgang-mail-record`
//! in the controller's namespace, because the state directory of a pod is an emptyDir that a
//! restart empties.
//!
//! Every write carries the `resourceVersion` that was read, so the API server rejects a write
//! over a record that another replica changed with 409 Conflict. The store then reads the
//! newer record, merges it with its own ([`SentRecord::merge`]) and writes again, so neither
//! replica's mails are lost from the record. The round reads the record before each mail
//! ([`crate::schedule::send_due`]), so a mail that the other replica recorded is not sent
//! again. Only the leader runs the round, so the store's lock is the leader election.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info};

use crate::schedule::{ScheduleError, SendLock, SentRecord, SentRecordStore};

/// Name of the ConfigMap that contains the record.
pub const CONFIG_MAP_NAME: &str = "adgang-mail-record";

/// Key of the record's JSON in the ConfigMap's `data`.
pub const RECORD_KEY: &str = "sent.json";

/// Writes in a row that may meet 409 Conflict before the save gives up.
const MAX_CONFLICTS: usize = 5;

/// A [`SentRecordStore`] on the ConfigMap [`CONFIG_MAP_NAME`].
pub struct ConfigMapSentRecordStore {
    api: Api<ConfigMap>,
    namespace: String,
    /// The `resourceVersion` of the last read or write; `None` when the ConfigMap did not
    /// exist then.
    resource_version: Mutex<Option<String>>,
}

impl ConfigMapSentRecordStore {
    /// Creates a store in `namespace`. The ConfigMap is created by the first save.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            resource_version: Mutex::new(None),
        }
    }

    fn api_error(&self, operation: &'static str, error: kube::Error) -> ScheduleError {
        ScheduleError::Api {
            operation,
            object: format!("ConfigMap {}/{CONFIG_MAP_NAME}", self.namespace),
            message: error.to_string(),
        }
    }

    /// Reads the record and its `resourceVersion`.
    async fn read(&self) -> Result<(SentRecord, Option<String>), ScheduleError> {
        let config_map = self
            .api
            .get_opt(CONFIG_MAP_NAME)
            .await
            .map_err(|e| self.api_error("read", e))?;
        let Some(config_map) = config_map else {
            return Ok((SentRecord::default(), None));
        };
        let version = config_map.metadata.resource_version.clone();
        let text = config_map
            .data
            .as_ref()
            .and_then(|data| data.get(RECORD_KEY))
            .map(String::as_str)
            .unwrap_or("{}");
        let record = serde_json::from_str(text).map_err(|e| ScheduleError::InvalidConfigMap {
            object: format!("ConfigMap {}/{CONFIG_MAP_NAME}", self.namespace),
            key: RECORD_KEY,
            message: e.to_string(),
        })?;
        Ok((record, version))
    }

    fn remember(&self, version: Option<String>) {
        *self
            .resource_version
            .lock()
            .expect("no thread panics holding the lock") = version;
    }

    fn remembered(&self) -> Option<String> {
        self.resource_version
            .lock()
            .expect("no thread panics holding the lock")
            .clone()
    }

    /// Writes `record` with the remembered `resourceVersion`: a create when the ConfigMap
    /// did not exist, a replace otherwise. Returns the new `resourceVersion`.
    async fn write(
        &self,
        record: &SentRecord,
        version: Option<String>,
    ) -> Result<Option<String>, kube::Error> {
        let mut text = serde_json::to_string_pretty(record).expect("the record serialises");
        text.push('\n');
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP_NAME.to_owned()),
                namespace: Some(self.namespace.clone()),
                resource_version: version.clone(),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_owned(),
                    "adgang".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(RECORD_KEY.to_owned(), text)])),
            ..ConfigMap::default()
        };
        let params = PostParams::default();
        let stored = match version {
            None => self.api.create(&params, &config_map).await?,
            Some(_) => {
                self.api
                    .replace(CONFIG_MAP_NAME, &params, &config_map)
                    .await?
            }
        };
        Ok(stored.metadata.resource_version)
    }

    async fn save_merged(&self, record: &SentRecord) -> Result<(), ScheduleError> {
        let mut record = record.clone();
        for _ in 0..MAX_CONFLICTS {
            match self.write(&record, self.remembered()).await {
                Ok(version) => {
                    debug!(resource_version = ?version, "saved the mail record");
                    self.remember(version);
                    return Ok(());
                }
                Err(kube::Error::Api(status))
                    if status.is_conflict() || status.is_already_exists() =>
                {
                    info!(
                        config_map = CONFIG_MAP_NAME,
                        "the mail record changed since it was read; merging and writing again"
                    );
                    let (theirs, version) = self.read().await?;
                    record.merge(&theirs);
                    self.remember(version);
                }
                Err(e) => return Err(self.api_error("write", e)),
            }
        }
        Err(ScheduleError::Api {
            operation: "write",
            object: format!("ConfigMap {}/{CONFIG_MAP_NAME}", self.namespace),
            message: format!(
                "{MAX_CONFLICTS} writes in a row met 409 Conflict; the next round tries again"
            ),
        })
    }
}

impl SentRecordStore for ConfigMapSentRecordStore {
    fn lock(&self) -> BoxFuture<'_, Result<SendLock, ScheduleError>> {
        // The round runs on the leader only, so the leader election is the lock.
        Box::pin(std::future::ready(Ok(SendLock::new(()))))
    }

    fn load(&self) -> BoxFuture<'_, Result<SentRecord, ScheduleError>> {
        Box::pin(async move {
            let (record, version) = self.read().await?;
            self.remember(version);
            Ok(record)
        })
    }

    fn save<'a>(&'a self, record: &'a SentRecord) -> BoxFuture<'a, Result<(), ScheduleError>> {
        Box::pin(self.save_merged(record))
    }
}
