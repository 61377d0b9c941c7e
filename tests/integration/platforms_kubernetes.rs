//! Past one machine: a batch graded natively in two shards (`grade --shard`) and joined
//! (`merge`) gives the gradebook of one run; the manifests of `deploy/kubernetes/` validate
//! against the Kubernetes 1.30 JSON schemas (`check-jsonschema`, with strict schemas that
//! `deploy/kubernetes/schemas.py` writes from the PyPI package kubernetes-validate), and a
//! manifest with a wrong field does not; the grading Job pairs an agent and a grader per
//! shard, locked down as Compose's pairs are; and one shard's pod is emulated with Docker
//! containers sharing a holder's IPC and PID namespaces (as a pod's containers share its
//! pause container's), running the manifests' own commands.
//!
//! `check-jsonschema` and `kubernetes-validate` (PyPI) are looked for in
//! `${POOLGRADE_VENV:-.venv}`, where `scripts/setup.sh` installs them; the manifest tests fail
//! without them. The Docker test needs the engine and `poolgrade:latest`: without them it
//! prints `SKIPPED: ...`, and with `REQUIRE_DOCKER=1` it fails. No Kubernetes cluster runs
//! here: what only a cluster can show is listed in `deploy/kubernetes/README.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use assert_cmd::Command as BinCommand;
use serde_json::Value;
use serial_test::serial;

use crate::common::{bin, python_sysv_ipc};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn samples() -> PathBuf {
    repo().join("samples")
}

/// The virtual environment of the Python tools: `POOLGRADE_VENV` or `.venv` (relative to the
/// repository).
fn venv() -> PathBuf {
    let dir = PathBuf::from(std::env::var("POOLGRADE_VENV").unwrap_or_else(|_| ".venv".into()));
    if dir.is_absolute() {
        dir
    } else {
        repo().join(dir)
    }
}

/// A program of the virtual environment; fails the test when it is missing.
fn venv_tool(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh, or `python3 -m venv .venv && \
         .venv/bin/pip install check-jsonschema kubernetes-validate` (POOLGRADE_VENV names \
         another venv)",
        path.display()
    );
    path
}

/// The manifests (every YAML file of deploy/kubernetes but the kustomization).
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy())
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// A YAML file as JSON, read with the YAML library check-jsonschema itself uses.
fn yaml(path: &Path) -> Value {
    let out = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom ruamel.yaml import YAML\n\
             print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The Kubernetes version the manifests are validated for.
const KUBERNETES: &str = "1.30.0";

/// The schema names of the kinds the manifests use.
const SCHEMAS: &[&str] = &[
    "job-batch-v1",
    "pod-v1",
    "persistentvolumeclaim-v1",
    "configmap-v1",
    "namespace-v1",
    "networkpolicy-networking-v1",
];

/// Standalone strict schemas of [`SCHEMAS`] for [`KUBERNETES`], written by
/// `deploy/kubernetes/schemas.py` from the venv's kubernetes-validate.
fn schemas() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(venv_tool("python"))
        .arg(deploy().join("schemas.py"))
        .arg(KUBERNETES)
        .arg(dir.path())
        .args(SCHEMAS)
        .output()
        .expect("run schemas.py");
    assert!(
        out.status.success(),
        "schemas.py (is kubernetes-validate installed in the venv? scripts/setup.sh): {}",
        text(&out)
    );
    dir
}

/// The schema for a manifest's kind, in `dir` (see [`schemas`]).
fn schema_for(dir: &Path, kind: &str) -> PathBuf {
    let name = match kind {
        "Job" => "job-batch-v1",
        "Pod" => "pod-v1",
        "PersistentVolumeClaim" => "persistentvolumeclaim-v1",
        "ConfigMap" => "configmap-v1",
        "Namespace" => "namespace-v1",
        "NetworkPolicy" => "networkpolicy-networking-v1",
        other => panic!("no schema for kind {other}: add it to SCHEMAS and schema_for"),
    };
    dir.join(format!("{name}.json"))
}

fn check_jsonschema(schema: &Path, manifest: &Path) -> Output {
    Command::new(venv_tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(schema)
        .arg(manifest)
        .output()
        .expect("run check-jsonschema")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schema() {
    let schemas = schemas();
    let files = manifests();
    assert!(files.len() >= 7, "manifests: {files:?}");
    for file in files {
        let doc = yaml(&file);
        let kind = doc["kind"].as_str().expect("a kind");
        let out = check_jsonschema(&schema_for(schemas.path(), kind), &file);
        assert!(
            out.status.success(),
            "{} ({kind}) is not valid:\n{}",
            file.display(),
            text(&out)
        );
    }
}

#[test]
fn check_jsonschema_rejects_a_manifest_with_a_wrong_field() {
    let job = deploy().join("job-grade.yaml");
    let original = std::fs::read_to_string(&job).unwrap();
    let schemas = schemas();
    let schema = schema_for(schemas.path(), "Job");
    let dir = tempfile::tempdir().unwrap();
    for (what, from, to, named) in [
        (
            "an unknown field",
            "  parallelism: 4\n",
            "  paralelism: 4\n",
            "paralelism",
        ),
        (
            "a wrong type",
            "  completions: 4\n",
            "  completions: four\n",
            "completions",
        ),
        (
            "a required field left out",
            "            status: \"True\"\n",
            "",
            "'status' is a required property",
        ),
        (
            "a capability list that is a string",
            "              drop: [ALL]\n",
            "              drop: ALL\n",
            "drop",
        ),
    ] {
        assert!(original.contains(from), "job-grade.yaml holds {from:?}");
        let broken = dir.path().join("job-grade.yaml");
        std::fs::write(&broken, original.replacen(from, to, 1)).unwrap();
        let out = check_jsonschema(&schema, &broken);
        assert!(!out.status.success(), "{what} passed:\n{}", text(&out));
        assert!(text(&out).contains(named), "{what}: {}", text(&out));
    }
    // The unbroken copy passes, so what failed above is the change alone.
    let copy = dir.path().join("job-grade.yaml");
    std::fs::write(&copy, &original).unwrap();
    assert!(check_jsonschema(&schema, &copy).status.success());
}

#[test]
fn the_kustomization_lists_every_manifest_but_those_applied_later() {
    let kustomization = yaml(&deploy().join("kustomization.yaml"));
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_owned())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "job-merge.yaml" && n != "pod-files.yaml")
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The names of a container's added capabilities.
fn added_caps(container: &Value) -> Vec<&str> {
    let mut caps: Vec<&str> = container["securityContext"]["capabilities"]["add"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    caps.sort_unstable();
    caps
}

/// Every container of a pod spec: locked down, with limits.
fn assert_locked_down(name: &str, pod: &Value) {
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "{name}: no token"
    );
    assert_eq!(pod["enableServiceLinks"], false, "{name}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for key in ["hostIPC", "hostPID", "hostNetwork"] {
        assert!(pod[key].is_null() || pod[key] == false, "{name}: {key}");
    }
    let containers = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["initContainers"].as_array().into_iter().flatten());
    for c in containers {
        let sc = &c["securityContext"];
        let who = format!("{name}/{}", c["name"]);
        assert_ne!(sc["privileged"], true, "{who}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{who}"
        );
        for r in ["cpu", "memory"] {
            assert!(c["resources"]["limits"][r].is_string(), "{who}: {r} limit");
            assert!(
                c["resources"]["requests"][r].is_string(),
                "{who}: {r} request"
            );
        }
    }
}

#[test]
fn the_grading_job_pairs_an_agent_and_a_grader_per_shard_locked_down_like_compose() {
    let job = yaml(&deploy().join("job-grade.yaml"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let count = spec["completions"].as_u64().expect("completions");
    assert_eq!(
        spec["parallelism"].as_u64(),
        Some(count),
        "one pod per shard at once"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    // The grader counts the server's threads in /proc: the PID namespace is shared.
    assert_eq!(pod["shareProcessNamespace"], true);
    assert_locked_down("job-grade", pod);

    let agent = &pod["initContainers"][0];
    assert_eq!(agent["name"], "agent");
    assert_eq!(agent["restartPolicy"], "Always", "a native sidecar");
    assert!(agent["command"][2]
        .as_str()
        .unwrap()
        .contains("exec poolgrade agent --ctl /run/poolgrade-ctl"));
    // The capabilities of Compose's server-N, no more.
    assert_eq!(
        added_caps(agent),
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "KILL",
            "SETGID",
            "SETUID"
        ]
    );
    let grader = &pod["containers"][0];
    assert_eq!(grader["name"], "grader");
    // The capabilities of Compose's grader-N, no more.
    assert_eq!(added_caps(grader), ["SETGID", "SETUID"]);
    let script = grader["command"][2].as_str().unwrap();
    assert!(
        script.contains("poolgrade grade --agent /run/poolgrade-ctl"),
        "{script}"
    );
    assert!(script.contains("--shard \"$1/$2\""), "{script}");
    // The index comes from the Indexed Job, the count agrees with completions.
    assert_eq!(
        grader["args"],
        serde_json::json!(["$(JOB_COMPLETION_INDEX)", count.to_string()])
    );
    let merge = yaml(&deploy().join("job-merge.yaml"));
    let merger = &merge["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        merger["args"],
        serde_json::json!([count.to_string()]),
        "the merge expects every shard"
    );
    assert_locked_down("job-merge", &merge["spec"]["template"]["spec"]);
    assert_eq!(added_caps(merger), Vec::<&str>::new());

    // Mounts: submissions read-only everywhere; the results and the rubric never reach the
    // container that runs student servers.
    let mounts = |c: &Value| -> Vec<(String, bool)> {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_owned(),
                    m["readOnly"] == true,
                )
            })
            .collect()
    };
    for c in [agent, grader] {
        assert!(mounts(c).contains(&("/grading/submissions".into(), true)));
        assert!(mounts(c).iter().any(|(p, _)| p == "/run/poolgrade-ctl"));
    }
    let agent_paths: Vec<String> = mounts(agent).into_iter().map(|(p, _)| p).collect();
    assert!(!agent_paths
        .iter()
        .any(|p| p.starts_with("/results") || p.contains("rubric")));
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(volume("ctl")["emptyDir"]["medium"], "Memory");
    assert_eq!(
        volume("submissions")["persistentVolumeClaim"]["readOnly"],
        true
    );
    assert_eq!(
        volume("results")["persistentVolumeClaim"]["claimName"],
        "poolgrade-results"
    );

    // The files pod meets "restricted"; the namespace enforces "baseline".
    let files = yaml(&deploy().join("pod-files.yaml"));
    assert_locked_down("pod-files", &files["spec"]);
    assert_eq!(files["spec"]["securityContext"]["runAsNonRoot"], true);
    let ns = yaml(&deploy().join("namespace.yaml"));
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
}

/// `poolgrade grade --out OUT ARGS...`, natively; returns the exit code.
fn grade(out: &Path, args: &[&str]) -> i32 {
    let result = BinCommand::new(bin("poolgrade"))
        .arg("grade")
        .arg("--out")
        .arg(out)
        .args(args)
        .timeout(Duration::from_secs(240))
        .output()
        .expect("run poolgrade grade");
    result.status.code().expect("an exit code")
}

fn gradebook_rows(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("gradebook.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

#[test]
#[serial(sandbox)]
fn two_shards_merged_give_the_gradebook_of_one_run() {
    if !python_sysv_ipc() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| samples().join(n).display().to_string())
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let whole = tmp.path().join("whole");
    let status = grade(&whole, &all);
    // Shard 0 from --all-in, shard 1 from the folders named in another order: the same
    // name order either way.
    let s0 = tmp.path().join("shard-0");
    let s1 = tmp.path().join("shard-1");
    let samples_dir = samples().display().to_string();
    grade(&s0, &["--shard", "0/2", "--all-in", &samples_dir]);
    let reversed: Vec<&str> = all.iter().rev().copied().collect();
    grade(&s1, &[&["--shard", "1/2"][..], &reversed].concat());
    assert_eq!(gradebook_rows(&s0), ["alice", "carol"]);
    assert_eq!(gradebook_rows(&s1), ["bob", "dave"]);

    let merged = tmp.path().join("merged");
    let out = BinCommand::new(bin("poolgrade"))
        .args(["merge", "--out"])
        .arg(&merged)
        .arg(&s1)
        .arg(&s0)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(status),
        "merge gives one run's status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("gradebook.csv")).unwrap(),
        std::fs::read_to_string(whole.join("gradebook.csv")).unwrap(),
        "the merged gradebook is one run's, byte for byte"
    );
    for (name, shard) in [("alice", &s0), ("bob", &s1), ("carol", &s0), ("dave", &s1)] {
        for file in [
            "results.json",
            "junit.xml",
            "classroom.json",
            "prairielearn.json",
        ] {
            assert_eq!(
                std::fs::read(merged.join(name).join(file)).unwrap(),
                std::fs::read(shard.join(name).join(file)).unwrap(),
                "{name}/{file}"
            );
        }
    }

    // A submission in two shards: refused with exit 2, nothing written.
    let twice = tmp.path().join("twice");
    BinCommand::new(bin("poolgrade"))
        .args(["merge", "--out"])
        .arg(&twice)
        .arg(&s0)
        .arg(&s0)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("\"alice\" is in two shards"));
    assert!(!twice.exists());
    // The merged folder is not merged into again.
    BinCommand::new(bin("poolgrade"))
        .args(["merge", "--out"])
        .arg(&merged)
        .arg(&s0)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not empty"));
}

#[test]
#[serial(sandbox)]
fn a_shard_must_exist_and_may_hold_no_submission() {
    let samples_dir = samples().display().to_string();
    for bad in ["2/2", "0/0", "1", "-1/2", "x/3"] {
        BinCommand::new(bin("poolgrade"))
            .args(["grade", &format!("--shard={bad}"), "--all-in", &samples_dir])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("--shard"));
    }
    // More shards than the 4 samples: shard 5 of 6 grades nothing, starts no server, and
    // writes a gradebook with its header alone, which merges.
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("shard-5");
    BinCommand::new(bin("poolgrade"))
        .args(["grade", "--shard", "5/6", "--all-in", &samples_dir, "--out"])
        .arg(&empty)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(0)
        .stderr(predicates::str::contains("shard 5/6: 0 of the batch's 4"));
    assert_eq!(gradebook_rows(&empty), Vec::<String>::new());
    BinCommand::new(bin("poolgrade"))
        .args(["merge", "--out"])
        .arg(tmp.path().join("merged"))
        .arg(&empty)
        .assert()
        .code(0);
    // A shard that did not finish: no gradebook.
    BinCommand::new(bin("poolgrade"))
        .args(["merge", "--out"])
        .arg(tmp.path().join("merged-2"))
        .arg(&empty)
        .arg(tmp.path().join("shard-4"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("has no gradebook.csv"));
}

/// The grader image: `POOLGRADE_IMAGE` or `poolgrade:latest`.
fn grader_image() -> String {
    std::env::var("POOLGRADE_IMAGE").unwrap_or_else(|_| "poolgrade:latest".into())
}

/// Whether the Docker engine answers and the grader image exists (see
/// [`crate::common::images_available`]).
fn docker_available(test: &str) -> bool {
    crate::common::images_available(test, &[grader_image()])
}

/// Removes the named containers (running or not) when dropped.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.0)
                .output();
        }
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container's `command` as (the `sh -c` script, the name given as `$0`).
fn script_of(container: &Value) -> (String, String) {
    let command = container["command"].as_array().unwrap();
    assert_eq!(command[0], "sh");
    assert_eq!(command[1], "-c");
    (
        command[2].as_str().unwrap().to_owned(),
        command
            .get(3)
            .and_then(Value::as_str)
            .unwrap_or("sh")
            .to_owned(),
    )
}

/// A folder made as the kubelet makes an emptyDir: mode 0777, root's.
fn empty_dir(parent: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn volume(host: &Path, target: &str, read_only: bool) -> String {
    format!(
        "{}:{target}{}",
        host.display(),
        if read_only { ":ro" } else { "" }
    )
}

#[test]
#[serial(docker, sandbox)]
fn shard_pods_emulated_with_docker_run_the_manifests_commands_and_merge() {
    let test = "shard_pods_emulated_with_docker_run_the_manifests_commands_and_merge";
    if !docker_available(test) || !python_sysv_ipc() {
        return;
    }
    let job = yaml(&deploy().join("job-grade.yaml"));
    let pod = &job["spec"]["template"]["spec"];
    let (agent_script, _) = script_of(&pod["initContainers"][0]);
    let (grader_script, grader_name) = script_of(&pod["containers"][0]);
    let merge_job = yaml(&deploy().join("job-merge.yaml"));
    let (merge_script, merge_name) =
        script_of(&merge_job["spec"]["template"]["spec"]["containers"][0]);
    let image = grader_image();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let results = tmp.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let rubric = tmp.path().join("rubric");
    std::fs::create_dir(&rubric).unwrap();
    std::fs::write(rubric.join("rubric.toml"), "").unwrap();
    let samples_ro = volume(&samples(), "/grading/submissions", true);
    let tag = format!("pgk-{}", std::process::id());
    let mut guard = Containers(Vec::new());
    let locked = |name: &str, holder: &str| -> Vec<String> {
        [
            "run",
            "-d",
            "--name",
            name,
            "--ipc",
            &format!("container:{holder}"),
            "--pid",
            &format!("container:{holder}"),
            "--network",
            &format!("container:{holder}"),
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--user",
            "0:0",
            "--cpus",
            "0.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Four pods, one per shard (one sample each), side by side.
    const SHARDS: usize = 4;
    let mut pods = Vec::new();
    for index in 0..SHARDS {
        let holder = format!("{tag}-pod-{index}");
        let agent = format!("{tag}-agent-{index}");
        let grader = format!("{tag}-grader-{index}");
        guard
            .0
            .extend([holder.clone(), agent.clone(), grader.clone()]);
        // The pause container: it holds the pod's IPC, PID and network namespaces.
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &holder,
            "--network",
            "none",
            "--ipc",
            "shareable",
            "--read-only",
            "--cap-drop",
            "ALL",
            &image,
            "sleep",
            "900",
        ]);
        let ctl = empty_dir(tmp.path(), &format!("ctl-{index}"));
        let run = empty_dir(tmp.path(), &format!("run-{index}"));
        let agent_tmp = empty_dir(tmp.path(), &format!("tmp-{index}"));
        let var_tmp = empty_dir(tmp.path(), &format!("var-tmp-{index}"));
        let grader_tmp = empty_dir(tmp.path(), &format!("grader-tmp-{index}"));
        let mut args = locked(&agent, &holder);
        for cap in [
            "SETUID",
            "SETGID",
            "KILL",
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
        ] {
            args.extend(["--cap-add".into(), cap.into()]);
        }
        for v in [
            samples_ro.clone(),
            volume(&ctl, "/run/poolgrade-ctl", false),
            volume(&run, "/run", false),
            volume(&agent_tmp, "/tmp", false),
            volume(&var_tmp, "/var/tmp", false),
        ] {
            args.extend(["-v".into(), v]);
        }
        args.extend([
            image.clone(),
            "sh".into(),
            "-c".into(),
            agent_script.clone(),
        ]);
        docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // The startup probe: the grader starts once agent.json is there.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ctl.join("agent.json").is_file() {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent never started"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(mode(&ctl), 0o700, "the control folder is root's alone");
        assert_eq!(mode(&agent_tmp), 0o1777, "/tmp is sticky");
        assert_eq!(mode(&run), 0o755);
        let mut args = locked(&grader, &holder);
        for cap in ["SETUID", "SETGID"] {
            args.extend(["--cap-add".into(), cap.into()]);
        }
        for v in [
            samples_ro.clone(),
            volume(&rubric, "/grading/rubric", true),
            volume(&ctl, "/run/poolgrade-ctl", false),
            volume(&results, "/results", false),
            volume(&grader_tmp, "/tmp", false),
        ] {
            args.extend(["-v".into(), v]);
        }
        args.extend([
            image.clone(),
            "sh".into(),
            "-c".into(),
            grader_script.clone(),
            grader_name.clone(),
            index.to_string(),
            SHARDS.to_string(),
        ]);
        docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        pods.push((agent, grader));
    }
    for (agent, grader) in &pods {
        let code = docker_ok(&["wait", grader]);
        let logs = text(&docker(&["logs", grader]));
        assert_eq!(
            code, "0",
            "{grader} exits 0 once its results are written:\n{logs}"
        );
        // The kubelet stops a native sidecar once the main container has exited.
        docker_ok(&["stop", "-t", "10", agent]);
        let agent_code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", agent]);
        assert_eq!(agent_code, "0", "{agent} leaves on SIGTERM with status 0");
    }
    for (index, name) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        assert_eq!(
            gradebook_rows(&results.join(format!("shard-{index}"))),
            [*name]
        );
    }

    // The merge Job's command, over both shards.
    let merger = format!("{tag}-merge");
    guard.0.push(merger.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &merger,
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--user",
        "0:0",
        "-v",
        &volume(&results, "/results", false),
        &image,
        "sh",
        "-c",
        &merge_script,
        &merge_name,
        &SHARDS.to_string(),
    ]);
    assert_eq!(docker_ok(&["wait", &merger]), "0");
    let merge_logs = text(&docker(&["logs", &merger]));
    assert!(
        merge_logs.contains("merge exited 1"),
        "bob and dave fail checks: {merge_logs}"
    );

    // The same verdicts as one native run.
    let native = tmp.path().join("native");
    let samples_dir = samples().display().to_string();
    assert_eq!(grade(&native, &["--all-in", &samples_dir]), 1);
    assert_eq!(
        std::fs::read_to_string(results.join("merged/gradebook.csv")).unwrap(),
        std::fs::read_to_string(native.join("gradebook.csv")).unwrap(),
        "the pods' merged gradebook is the native run's"
    );
}
