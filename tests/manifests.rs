//! Checks of the kustomize base in `manifests/`, its components and the `Containerfile`.
//!
//! The manifests are rendered with `kubectl kustomize` when kubectl is installed (or named
//! by `KUBECTL`). Without kubectl, the YAML files are read directly: `resources`,
//! `components`, `configMapGenerator` and `namespace` are followed, but patches are not
//! applied, so the checks of a component's patches are skipped. Set `KUBECTL=none` to run
//! the checks that way with kubectl installed. Each test prints which way it rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use adgang::config::Config;
use serde_json::{Map, Value, json};

const NAMESPACE: &str = "adgang";
const CONFIG_PATH: &str = "/etc/adgang/config.yaml";

/// The Secrets that the base references by name and never renders.
const SECRET_NAMES: [&str; 3] = [
    "adgang-bind-password",
    "adgang-directory-ca",
    "adgang-webhook",
];

/// Every (API group, resource, verb) that the controller's Role may grant, and must grant.
const ALLOWED_RBAC: &[(&str, &str, &[&str])] = &[
    (
        "adgang.example.org",
        "suppliers",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "adgang.example.org",
        "supplierusers",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("adgang.example.org", "suppliers/status", &["patch"]),
    ("adgang.example.org", "supplierusers/status", &["patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    ("", "configmaps", &["get", "create", "update"]),
];

/// Every (protocol, port) that the NetworkPolicy may open for egress, and must open.
const ALLOWED_EGRESS: [(&str, i64); 8] = [
    ("UDP", 53),
    ("TCP", 53),
    ("TCP", 443),
    ("TCP", 6443),
    ("TCP", 636),
    ("TCP", 22),
    ("TCP", 587),
    ("TCP", 465),
];

/// Kinds without a namespace that the manifests use.
const CLUSTER_SCOPED_KINDS: [&str; 4] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

// ---------------------------------------------------------------------------------------
// Rendering

enum Renderer {
    /// `kubectl kustomize` with this kubectl.
    Kubectl(String),
    /// The YAML files read directly, without patches.
    Files,
}

/// The rendered objects of one kustomization, and whether patches were left unapplied.
struct Rendered {
    objects: Vec<Value>,
    patches_skipped: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent folder")
        .to_owned()
}

fn manifests_dir() -> PathBuf {
    repo_root().join("manifests")
}

/// Chooses kubectl when it runs, and the YAML files when it is not installed. A kubectl
/// that is installed but fails is a test failure, not a reason to fall back.
fn renderer() -> &'static Renderer {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    RENDERER.get_or_init(|| {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
        match Command::new(&kubectl)
            .args(["version", "--client"])
            .output()
        {
            Ok(output) if output.status.success() => Renderer::Kubectl(kubectl),
            Ok(output) => panic!(
                "`{kubectl} version --client` failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Renderer::Files,
            Err(error) => panic!("failed to run `{kubectl} version --client`: {error}"),
        }
    })
}

/// Renders the kustomization in `dir`.
fn render(dir: &Path) -> Rendered {
    match renderer() {
        Renderer::Kubectl(kubectl) => {
            println!("rendering {} with `{kubectl} kustomize`", dir.display());
            let output = Command::new(kubectl)
                .arg("kustomize")
                .arg(dir)
                .output()
                .unwrap_or_else(|error| panic!("failed to run `{kubectl} kustomize`: {error}"));
            assert!(
                output.status.success(),
                "`{kubectl} kustomize {}` failed with {}: {}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
            Rendered {
                objects: parse_documents(&text, &dir.display().to_string()),
                patches_skipped: false,
            }
        }
        Renderer::Files => {
            println!(
                "kubectl not found: reading the YAML files under {} directly, without patches",
                dir.display()
            );
            render_files(dir)
        }
    }
}

/// Renders the base `manifests/`.
fn base() -> &'static Rendered {
    static BASE: OnceLock<Rendered> = OnceLock::new();
    BASE.get_or_init(|| render(&manifests_dir()))
}

/// Renders an overlay of the base with the named components of `manifests/components/`.
/// The overlay lives in a temporary folder, because kustomize rejects an overlay inside the
/// folder of its base.
fn render_with_components(components: &[&str]) -> Rendered {
    let overlay = tempfile::tempdir().expect("create a temporary folder");
    let to_manifests = relative_path(overlay.path(), &manifests_dir());
    let mut text = format!("resources:\n  - {to_manifests}\ncomponents:\n");
    for component in components {
        text.push_str(&format!("  - {to_manifests}/components/{component}\n"));
    }
    std::fs::write(overlay.path().join("kustomization.yaml"), text)
        .expect("write the overlay's kustomization.yaml");
    render(overlay.path())
}

/// Returns a relative path from the folder `from` to `to`. Kustomize accepts only relative
/// paths in `resources` and `components`.
fn relative_path(from: &Path, to: &Path) -> String {
    let from = from.canonicalize().expect("the overlay folder exists");
    let to = to.canonicalize().expect("manifests/ exists");
    let depth = from
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let below_root: Vec<String> = to
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    format!("{}{}", "../".repeat(depth), below_root.join("/"))
}

fn parse_documents(text: &str, source: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|error| panic!("invalid YAML in {source}: {error}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn read_yaml_file(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
    parse_documents(&text, &path.display().to_string())
}

/// Follows a kustomization's `resources`, `components`, `configMapGenerator` and
/// `namespace` without kubectl. Generated ConfigMaps keep their name without kustomize's
/// hash suffix, so references to them stay as written.
fn render_files(dir: &Path) -> Rendered {
    let kustomization_path = dir.join("kustomization.yaml");
    let kustomization = read_yaml_file(&kustomization_path)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", kustomization_path.display()));

    let mut objects = Vec::new();
    let mut patches_skipped = false;
    for field in ["resources", "components"] {
        for entry in string_list(&kustomization, field) {
            let path = dir.join(&entry);
            if path.is_dir() {
                let nested = render_files(&path);
                objects.extend(nested.objects);
                patches_skipped |= nested.patches_skipped;
            } else {
                objects.extend(read_yaml_file(&path));
            }
        }
    }
    for generator in array(&kustomization, "/configMapGenerator") {
        objects.push(generate_config_map(dir, generator));
    }
    for field in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
        patches_skipped |= kustomization.get(field).is_some();
    }

    if let Some(namespace) = kustomization.get("namespace").and_then(Value::as_str) {
        for object in &mut objects {
            if !CLUSTER_SCOPED_KINDS.contains(&kind(object)) {
                object["metadata"]["namespace"] = json!(namespace);
            }
        }
    }
    Rendered {
        objects,
        patches_skipped,
    }
}

fn generate_config_map(dir: &Path, generator: &Value) -> Value {
    let name = generator["name"]
        .as_str()
        .expect("a configMapGenerator entry has a name");
    let mut data = Map::new();
    for file in string_list(generator, "files") {
        // An entry is `path` or `key=path`.
        let (key, path) = match file.split_once('=') {
            Some((key, path)) => (key.to_owned(), path.to_owned()),
            None => {
                let key = Path::new(&file).file_name().unwrap().to_string_lossy();
                (key.into_owned(), file.clone())
            }
        };
        let content = std::fs::read_to_string(dir.join(&path))
            .unwrap_or_else(|error| panic!("failed to read {path} for {name}: {error}"));
        data.insert(key, json!(content));
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": data,
    })
}

// ---------------------------------------------------------------------------------------
// Lookups

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn of_kind<'a>(objects: &'a [Value], expected_kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| kind(o) == expected_kind)
        .collect()
}

/// Returns the one object of `expected_kind`, failing with the kinds that were rendered.
fn only<'a>(objects: &'a [Value], expected_kind: &str) -> &'a Value {
    let found = of_kind(objects, expected_kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {expected_kind}, found {}; rendered: {:?}",
        found.len(),
        objects
            .iter()
            .map(|o| (kind(o), name(o)))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn string_list(value: &Value, field: &str) -> Vec<String> {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a list of strings").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn deployment(objects: &[Value]) -> &Value {
    only(objects, "Deployment")
}

fn pod_spec(objects: &[Value]) -> &Value {
    &deployment(objects)["spec"]["template"]["spec"]
}

/// Returns all containers of the pod, init containers included.
fn containers(objects: &[Value]) -> Vec<&Value> {
    let spec = pod_spec(objects);
    let all: Vec<&Value> = array(spec, "/initContainers")
        .iter()
        .chain(array(spec, "/containers"))
        .collect();
    assert!(!all.is_empty(), "the Deployment has no containers");
    all
}

fn main_container(objects: &[Value]) -> &Value {
    let main = array(pod_spec(objects), "/containers");
    assert_eq!(main.len(), 1, "expected one container in the Deployment");
    &main[0]
}

fn pod_labels(objects: &[Value]) -> &Map<String, Value> {
    deployment(objects)["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("the pod template has labels")
}

/// Checks whether the pod carries every label of `selector`.
fn selects_pod(selector: &Value, objects: &[Value]) -> bool {
    let labels = pod_labels(objects);
    let selector = selector.as_object().expect("a label selector is a map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Returns a container's security setting, or the pod's when the container does not set it.
fn effective<'a>(objects: &'a [Value], container: &'a Value, field: &str) -> &'a Value {
    let own = &container["securityContext"][field];
    if own.is_null() {
        &pod_spec(objects)["securityContext"][field]
    } else {
        own
    }
}

fn volume<'a>(objects: &'a [Value], volume_name: &str) -> &'a Value {
    array(pod_spec(objects), "/volumes")
        .iter()
        .find(|v| v["name"] == volume_name)
        .unwrap_or_else(|| panic!("the Deployment has no volume {volume_name:?}"))
}

/// Finds the volume mount whose path contains `path`, the longest when mounts nest.
fn mount_containing<'a>(container: &'a Value, path: &Path) -> Option<&'a Value> {
    array(container, "/volumeMounts")
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("/nonexistent")))
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
}

fn env_value<'a>(container: &'a Value, variable: &str) -> Option<&'a Value> {
    array(container, "/env")
        .iter()
        .find(|e| e["name"] == variable)
}

// ---------------------------------------------------------------------------------------
// The base

#[test]
fn base_renders_expected_objects() {
    let objects = &base().objects;
    let expected = [
        ("Namespace", "adgang"),
        ("CustomResourceDefinition", "suppliers.adgang.example.org"),
        (
            "CustomResourceDefinition",
            "supplierusers.adgang.example.org",
        ),
        ("ServiceAccount", "adgang"),
        ("Role", "adgang-controller"),
        ("RoleBinding", "adgang-controller"),
        ("Deployment", "adgang"),
        ("Service", "adgang"),
        ("NetworkPolicy", "adgang"),
        ("PodDisruptionBudget", "adgang"),
    ];
    for (expected_kind, expected_name) in expected {
        assert!(
            objects
                .iter()
                .any(|o| kind(o) == expected_kind && name(o) == expected_name),
            "{expected_kind} {expected_name} is not rendered"
        );
    }
    assert_eq!(of_kind(objects, "ConfigMap").len(), 1, "one ConfigMap");
}

#[test]
fn namespaced_objects_in_adgang_namespace() {
    for object in &base().objects {
        let namespace = object["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED_KINDS.contains(&kind(object)) {
            assert_eq!(namespace, None, "{} {}", kind(object), name(object));
        } else {
            assert_eq!(
                namespace,
                Some(NAMESPACE),
                "{} {}",
                kind(object),
                name(object)
            );
        }
    }
}

/// Returns the first place where `left` and `right` differ, as a JSON pointer and both values.
/// Numbers compare by value, because kustomize writes `3660.0` as `3660`.
fn first_difference(left: &Value, right: &Value, pointer: &str) -> Option<String> {
    match (left, right) {
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|key| {
                let inner = format!("{pointer}/{key}");
                match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &inner),
                    (x, y) => Some(format!("{inner}: {x:?} against {y:?}")),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{pointer}/{i}"))),
        (x, y) if x == y => None,
        (x, y) => Some(format!("{pointer}: {x} against {y}")),
    }
}

#[test]
fn crds_match_generated_files() {
    let objects = &base().objects;
    let crd_dir = repo_root().join("crds");
    let mut files = 0;
    for entry in std::fs::read_dir(&crd_dir).expect("crds/ exists") {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        files += 1;
        let generated = read_yaml_file(&path).remove(0);
        let rendered = objects
            .iter()
            .find(|o| kind(o) == "CustomResourceDefinition" && name(o) == name(&generated))
            .unwrap_or_else(|| panic!("{} is not rendered", path.display()));
        if let Some(difference) = first_difference(rendered, &generated, "") {
            panic!("{} changed in rendering: {difference}", path.display());
        }
    }
    assert_eq!(
        of_kind(objects, "CustomResourceDefinition").len(),
        files,
        "rendered CRDs"
    );
}

#[test]
fn crds_kustomization_lists_every_crd() {
    let crd_dir = repo_root().join("crds");
    let kustomization = read_yaml_file(&crd_dir.join("kustomization.yaml")).remove(0);
    let listed: BTreeSet<String> = string_list(&kustomization, "resources")
        .into_iter()
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(&crd_dir)
        .expect("crds/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, files,
        "crds/kustomization.yaml must list every CRD file in crds/"
    );
}

// ---------------------------------------------------------------------------------------
// The Deployment

#[test]
fn deployment_containers_are_hardened() {
    let objects = &base().objects;
    let spec = pod_spec(objects);
    for flag in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(spec[flag], json!(true), "pod sets {flag}");
    }
    assert_eq!(spec["automountServiceAccountToken"], json!(true));

    for container in containers(objects) {
        let container_name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        assert_eq!(
            effective(objects, container, "runAsNonRoot"),
            &json!(true),
            "{container_name}: runAsNonRoot"
        );
        let user = effective(objects, container, "runAsUser");
        assert!(
            user.as_i64().is_some_and(|uid| uid > 0),
            "{container_name}: runAsUser is {user}, expected a non-zero user ID"
        );
        assert_eq!(
            context["readOnlyRootFilesystem"],
            json!(true),
            "{container_name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            context["allowPrivilegeEscalation"],
            json!(false),
            "{container_name}: allowPrivilegeEscalation"
        );
        assert_ne!(
            context["privileged"],
            json!(true),
            "{container_name}: privileged"
        );
        assert_eq!(
            context["capabilities"]["drop"],
            json!(["ALL"]),
            "{container_name}: capabilities.drop"
        );
        assert!(
            array(context, "/capabilities/add").is_empty(),
            "{container_name}: capabilities.add must be empty"
        );
        assert_eq!(
            effective(objects, container, "seccompProfile")["type"],
            json!("RuntimeDefault"),
            "{container_name}: seccompProfile"
        );
    }
}

#[test]
fn deployment_containers_set_resources() {
    let objects = &base().objects;
    for container in containers(objects) {
        let container_name = container["name"].as_str().unwrap_or("?");
        for pointer in [
            "/resources/requests/cpu",
            "/resources/requests/memory",
            "/resources/limits/cpu",
            "/resources/limits/memory",
        ] {
            assert!(
                container.pointer(pointer).is_some(),
                "{container_name}: {pointer} is not set"
            );
        }
    }
}

#[test]
fn deployment_containers_set_probes() {
    let container = main_container(&base().objects);
    assert_eq!(
        container["ports"],
        json!([{ "name": "http", "containerPort": 8080, "protocol": "TCP" }])
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], json!(path), "{probe} path");
        assert!(
            get["port"] == json!("http") || get["port"] == json!(8080),
            "{probe} port is {}, expected http or 8080",
            get["port"]
        );
    }
}

#[test]
fn deployment_runs_controller_with_config() {
    let objects = &base().objects;
    let spec = &deployment(objects)["spec"];
    assert_eq!(spec["replicas"], json!(2));
    assert_eq!(
        spec["template"]["spec"]["serviceAccountName"],
        json!("adgang")
    );

    let container = main_container(objects);
    assert!(
        container.get("command").is_none(),
        "the image's ENTRYPOINT is /adgang"
    );
    assert_eq!(
        container["args"],
        json!([
            "controller",
            "--config",
            CONFIG_PATH,
            "--listen",
            "0.0.0.0:8080"
        ])
    );
    assert_eq!(
        env_value(container, "POD_NAME").map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&json!("metadata.name")),
        "the Lease holder identity comes from the pod's name"
    );
    assert_eq!(
        env_value(container, "ADGANG_WEBHOOK_SECRET_FILE").map(|e| &e["value"]),
        Some(&json!("/etc/adgang/secrets/webhook-secret"))
    );
    assert_eq!(
        env_value(container, "ADGANG_LOG_FORMAT").map(|e| &e["value"]),
        Some(&json!("json"))
    );
    assert_eq!(
        env_value(container, "ADGANG_BIND_PASSWORD_FILE").map(|e| &e["value"]),
        Some(&json!("/etc/adgang/secrets/bind-password"))
    );
}

// ---------------------------------------------------------------------------------------
// Secrets and the configuration

/// Returns the Secrets that the pod references, each with the kind of reference.
fn referenced_secrets(objects: &[Value]) -> BTreeMap<String, &'static str> {
    let spec = pod_spec(objects);
    let mut names = BTreeMap::new();
    for volume in array(spec, "/volumes") {
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            names.insert(secret.to_owned(), "secret volume");
        }
        for source in array(volume, "/projected/sources") {
            if let Some(secret) = source["secret"]["name"].as_str() {
                names.insert(secret.to_owned(), "projected volume");
            }
        }
    }
    for container in containers(objects) {
        for variable in array(container, "/env") {
            if let Some(secret) = variable["valueFrom"]["secretKeyRef"]["name"].as_str() {
                names.insert(secret.to_owned(), "env");
            }
        }
        for source in array(container, "/envFrom") {
            if let Some(secret) = source["secretRef"]["name"].as_str() {
                names.insert(secret.to_owned(), "envFrom");
            }
        }
    }
    names
}

#[test]
fn secrets_referenced_never_rendered() {
    let objects = &base().objects;
    for secret in of_kind(objects, "Secret") {
        assert!(
            secret.get("data").is_none() && secret.get("stringData").is_none(),
            "Secret {} is rendered with its values; create it with kubectl instead",
            name(secret)
        );
    }
    assert!(of_kind(objects, "Secret").is_empty(), "no Secret objects");

    let referenced = referenced_secrets(objects);
    let names: BTreeSet<&str> = referenced.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(SECRET_NAMES), "referenced Secrets");

    let secrets = volume(objects, "secrets");
    let mode = secrets["projected"]["defaultMode"]
        .as_i64()
        .expect("the secrets volume sets defaultMode");
    assert_eq!(
        mode & 0o007,
        0,
        "Secret files are readable by others: mode {mode:o}"
    );

    for container in containers(objects) {
        for variable in array(container, "/env") {
            let variable_name = variable["name"].as_str().unwrap_or("");
            let secret_like = ["PASSWORD", "SECRET", "TOKEN"]
                .iter()
                .any(|word| variable_name.contains(word));
            assert!(
                !secret_like || variable_name.ends_with("_FILE"),
                "{variable_name} carries a secret in the pod spec; mount it as a file"
            );
        }
    }
}

/// Returns the config.yaml of the ConfigMap that the Deployment mounts.
fn mounted_config(objects: &[Value]) -> &str {
    let config_map_name = volume(objects, "config")["configMap"]["name"]
        .as_str()
        .expect("the config volume is a ConfigMap");
    let config_map = of_kind(objects, "ConfigMap")
        .into_iter()
        .find(|c| name(c) == config_map_name)
        .unwrap_or_else(|| panic!("ConfigMap {config_map_name} is not rendered"));
    config_map["data"]["config.yaml"]
        .as_str()
        .expect("the ConfigMap has config.yaml")
}

#[test]
fn config_map_loads_as_adgang_config() {
    let objects = &base().objects;
    let text = mounted_config(objects);
    let config = Config::from_str(
        Path::new(CONFIG_PATH),
        text,
        Some("placeholder".to_owned()),
        None,
    )
    .unwrap_or_else(|error| panic!("the ConfigMap's config.yaml does not load: {error}"));

    let container = main_container(objects);
    let config_mount =
        mount_containing(container, Path::new(CONFIG_PATH)).expect("config.yaml is mounted");
    assert_eq!(config_mount["mountPath"], json!(CONFIG_PATH));
    assert_eq!(config_mount["subPath"], json!("config.yaml"));

    // Files the controller only reads lie on read-only mounts.
    let bind_password_file = env_value(container, "ADGANG_BIND_PASSWORD_FILE")
        .and_then(|e| e["value"].as_str())
        .expect("ADGANG_BIND_PASSWORD_FILE is set");
    for (what, path) in [
        ("directory.caFile", config.directory.ca_file.as_path()),
        ("ADGANG_BIND_PASSWORD_FILE", Path::new(bind_password_file)),
    ] {
        let mount = mount_containing(container, path)
            .unwrap_or_else(|| panic!("{what} {} is on no volume", path.display()));
        assert_eq!(
            mount["readOnly"],
            json!(true),
            "{what} is on a writable mount"
        );
        let file_name = path
            .strip_prefix(mount["mountPath"].as_str().unwrap())
            .unwrap();
        let projected = array(
            volume(objects, mount["name"].as_str().unwrap()),
            "/projected/sources",
        )
        .iter()
        .flat_map(|s| array(s, "/secret/items"))
        .any(|item| Path::new(item["path"].as_str().unwrap_or("")) == file_name);
        assert!(projected, "{what} {} is no Secret item", path.display());
    }

    // Folders the controller writes lie on writable emptyDir or claim volumes.
    for (what, path) in [
        ("stateDir", config.state_dir.as_path()),
        ("repository.cacheDir", config.repository.cache_dir.as_path()),
        (
            "credentials.directory",
            config
                .credentials_dir()
                .expect("the manifests deliver credentials to files"),
        ),
    ] {
        let mount = mount_containing(container, path)
            .unwrap_or_else(|| panic!("{what} {} is on no volume", path.display()));
        assert_ne!(
            mount["readOnly"],
            json!(true),
            "{what} is on a read-only mount"
        );
        let backing = volume(objects, mount["name"].as_str().unwrap());
        assert!(
            backing.get("emptyDir").is_some() || backing.get("persistentVolumeClaim").is_some(),
            "{what} is on volume {}, expected an emptyDir or a claim",
            backing["name"]
        );
    }
    assert!(
        mount_containing(container, Path::new("/tmp")).is_some(),
        "/tmp is not mounted, but the root file system is read-only"
    );
}

/// Returns the host of `scheme://host[:port]/...`.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.split(':').next().unwrap_or(host_port)
}

#[test]
fn manifests_name_only_placeholder_hosts() {
    let objects = &base().objects;
    let config = Config::from_str(
        Path::new(CONFIG_PATH),
        mounted_config(objects),
        Some("placeholder".to_owned()),
        None,
    )
    .expect("the ConfigMap's config.yaml loads");
    let image = main_container(objects)["image"].as_str().expect("an image");
    for (what, host) in [
        ("directory.url", url_host(&config.directory.url)),
        ("repository.url", url_host(&config.repository.url)),
        ("image", image.split('/').next().unwrap()),
    ] {
        assert!(
            host == "example.org" || host.ends_with(".example.org"),
            "{what} names {host}, expected a placeholder under example.org"
        );
    }
}

// ---------------------------------------------------------------------------------------
// RBAC

#[test]
fn role_grants_only_allowed_verbs() {
    let objects = &base().objects;
    let allowed: BTreeSet<(&str, &str, &str)> = ALLOWED_RBAC
        .iter()
        .flat_map(|(group, resource, verbs)| verbs.iter().map(move |v| (*group, *resource, *v)))
        .collect();
    let roles = of_kind(objects, "Role");
    assert!(!roles.is_empty(), "no Role is rendered");
    for role in roles {
        for rule in array(role, "/rules") {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "Role {} grants nonResourceURLs",
                name(role)
            );
            for group in string_list(rule, "apiGroups") {
                for resource in string_list(rule, "resources") {
                    for verb in string_list(rule, "verbs") {
                        assert!(
                            !group.contains('*') && !resource.contains('*') && !verb.contains('*'),
                            "Role {} grants a wildcard: {verb} {resource} in {group:?}",
                            name(role)
                        );
                        assert!(
                            allowed.contains(&(group.as_str(), resource.as_str(), verb.as_str())),
                            "Role {} grants {verb} on {resource} in {group:?}, which is not in \
                             the allow-list",
                            name(role)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn role_grants_what_controller_needs() {
    let role = only(&base().objects, "Role");
    let mut granted = BTreeSet::new();
    for rule in array(role, "/rules") {
        for group in string_list(rule, "apiGroups") {
            for resource in string_list(rule, "resources") {
                for verb in string_list(rule, "verbs") {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    for (group, resource, verbs) in ALLOWED_RBAC {
        for verb in *verbs {
            assert!(
                granted.contains(&(group.to_string(), resource.to_string(), verb.to_string())),
                "the Role does not grant {verb} on {resource} in {group:?}"
            );
        }
    }
}

#[test]
fn configmap_access_limited_to_mail_record() {
    let role = only(&base().objects, "Role");
    let mut rules = 0;
    for rule in array(role, "/rules") {
        if !string_list(rule, "resources").contains(&"configmaps".to_owned()) {
            continue;
        }
        rules += 1;
        let verbs = string_list(rule, "verbs");
        // Kubernetes cannot limit create by name, so create is in a rule of its own.
        if verbs == ["create"] {
            continue;
        }
        assert_eq!(
            string_list(rule, "resourceNames"),
            ["adgang-mail-record"],
            "configmaps {verbs:?} must be limited to the mail record"
        );
    }
    assert_eq!(rules, 2, "one rule by name and one for create");
}

#[test]
fn rbac_has_no_cluster_wide_grants() {
    let objects = &base().objects;
    assert!(of_kind(objects, "ClusterRole").is_empty(), "no ClusterRole");
    assert!(
        of_kind(objects, "ClusterRoleBinding").is_empty(),
        "no ClusterRoleBinding"
    );
    for binding in of_kind(objects, "RoleBinding")
        .into_iter()
        .chain(of_kind(objects, "ClusterRoleBinding"))
    {
        assert_ne!(
            binding["roleRef"]["name"],
            json!("cluster-admin"),
            "{} {} binds cluster-admin",
            kind(binding),
            name(binding)
        );
    }

    let binding = only(objects, "RoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "adgang-controller" })
    );
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "adgang", "namespace": NAMESPACE }])
    );
}

// ---------------------------------------------------------------------------------------
// Network, Service and disruption budget

#[test]
fn network_policy_limits_traffic() {
    let objects = &base().objects;
    let policy = only(objects, "NetworkPolicy");
    let spec = &policy["spec"];
    let types = string_list(spec, "policyTypes");
    assert!(
        types.contains(&"Ingress".to_owned()),
        "policyTypes lacks Ingress"
    );
    assert!(
        types.contains(&"Egress".to_owned()),
        "policyTypes lacks Egress"
    );
    assert!(
        selects_pod(&spec["podSelector"]["matchLabels"], objects),
        "the NetworkPolicy does not select the Deployment's pods"
    );

    let ingress = array(spec, "/ingress");
    assert!(!ingress.is_empty(), "no ingress rule opens port 8080");
    for rule in ingress {
        assert_eq!(
            rule["ports"],
            json!([{ "protocol": "TCP", "port": 8080 }]),
            "ingress rule opens more than TCP 8080"
        );
    }

    let allowed: BTreeSet<(&str, i64)> = ALLOWED_EGRESS.into_iter().collect();
    let mut opened = BTreeSet::new();
    for rule in array(spec, "/egress") {
        assert!(
            !array(rule, "/to").is_empty(),
            "egress rule {rule} has no `to`, so it reaches every address"
        );
        for peer in array(rule, "/to") {
            assert_ne!(
                peer["ipBlock"]["cidr"],
                json!("0.0.0.0/0"),
                "egress rule {rule} reaches every address"
            );
        }
        let ports = array(rule, "/ports");
        assert!(!ports.is_empty(), "egress rule {rule} opens every port");
        for port in ports {
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            let number = port["port"].as_i64().expect("egress ports are numbers");
            assert!(
                port.get("endPort").is_none(),
                "egress rule opens a port range"
            );
            assert!(
                allowed.contains(&(protocol, number)),
                "egress to {protocol} {number} is not in the allow-list"
            );
            opened.insert((protocol, number));
        }
    }
    assert_eq!(opened, allowed, "egress ports");
}

#[test]
fn service_exposes_http_port() {
    let objects = &base().objects;
    let service = only(objects, "Service");
    assert!(
        selects_pod(&service["spec"]["selector"], objects),
        "the Service does not select the Deployment's pods"
    );
    assert_eq!(
        service["spec"]["ports"],
        json!([{ "name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP" }])
    );
}

#[test]
fn disruption_budget_keeps_one_replica() {
    let objects = &base().objects;
    let budget = only(objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], json!(1));
    assert_eq!(
        budget["spec"]["unhealthyPodEvictionPolicy"],
        json!("AlwaysAllow"),
        "an AD outage makes both pods unready and must not block node drains"
    );
    assert!(
        selects_pod(&budget["spec"]["selector"]["matchLabels"], objects),
        "the PodDisruptionBudget does not select the Deployment's pods"
    );
    let replicas = deployment(objects)["spec"]["replicas"]
        .as_i64()
        .unwrap_or(1);
    assert!(
        replicas > 1,
        "with {replicas} replica a minAvailable of 1 blocks every node drain"
    );
}

// ---------------------------------------------------------------------------------------
// Components

fn assert_service_monitor(objects: &[Value]) -> &Value {
    let monitor = only(objects, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], json!("monitoring.coreos.com/v1"));
    assert_eq!(monitor["metadata"]["namespace"], json!(NAMESPACE));
    let endpoints = array(monitor, "/spec/endpoints");
    assert_eq!(endpoints.len(), 1, "one endpoint");
    assert_eq!(endpoints[0]["port"], json!("http"));
    assert_eq!(endpoints[0]["path"], json!("/metrics"));
    monitor
}

#[test]
fn servicemonitor_component_renders_alone() {
    let rendered = render(&manifests_dir().join("components/servicemonitor"));
    assert_service_monitor(&rendered.objects);
}

#[test]
fn servicemonitor_component_selects_service() {
    let rendered = render_with_components(&["servicemonitor"]);
    let objects = &rendered.objects;
    let monitor = assert_service_monitor(objects);
    let service = only(objects, "Service");
    let labels = service["metadata"]["labels"]
        .as_object()
        .expect("the Service has labels");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("the ServiceMonitor selects by labels");
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the ServiceMonitor's selector {selector:?} does not match the Service's labels"
    );
    assert!(
        array(service, "/spec/ports")
            .iter()
            .any(|p| p["name"] == "http"),
        "the Service has no port named http"
    );
}

#[test]
fn persistent_state_component_uses_claim() {
    let rendered = render_with_components(&["persistent-state"]);
    if rendered.patches_skipped {
        println!("skipped: the component's patches need kubectl to be applied");
        return;
    }
    let objects = &rendered.objects;
    let claim = only(objects, "PersistentVolumeClaim");
    assert_eq!(name(claim), "adgang-state");
    assert_eq!(claim["metadata"]["namespace"], json!(NAMESPACE));

    let spec = &deployment(objects)["spec"];
    assert_eq!(
        spec["replicas"],
        json!(1),
        "a ReadWriteOnce claim allows one replica"
    );
    assert_eq!(spec["strategy"], json!({ "type": "Recreate" }));
    assert_eq!(
        volume(objects, "state"),
        &json!({ "name": "state", "persistentVolumeClaim": { "claimName": "adgang-state" } })
    );

    let budget = only(objects, "PodDisruptionBudget");
    assert!(
        budget["spec"].get("minAvailable").is_none(),
        "minAvailable would block every eviction of the one replica"
    );
    assert_eq!(budget["spec"]["maxUnavailable"], json!(1));
}

// ---------------------------------------------------------------------------------------
// The Containerfile

#[test]
fn containerfile_builds_locked_and_runs_nonroot() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Containerfile")).expect("Containerfile exists");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build");
    assert_eq!(
        *froms.last().unwrap(),
        &"FROM gcr.io/distroless/cc-debian12:nonroot",
        "final stage"
    );
    assert!(
        instructions
            .iter()
            .any(|l| l.contains("cargo build --release --locked --bin adgang")),
        "the build uses the lock file"
    );
    let final_stage = instructions
        .iter()
        .skip_while(|l| l != froms.last().unwrap())
        .collect::<Vec<_>>();
    assert!(
        final_stage.iter().any(|l| l.starts_with("USER 65532")),
        "the final stage runs as 65532"
    );
    assert_eq!(final_stage.last().unwrap(), &&"ENTRYPOINT [\"/adgang\"]");

    let ignored =
        std::fs::read_to_string(root.join(".containerignore")).expect(".containerignore exists");
    for path in ["target/", ".git/"] {
        assert!(
            ignored.lines().any(|l| l.trim() == path),
            ".containerignore does not exclude {path}"
        );
    }
}
