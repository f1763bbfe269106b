"""Offline checks of the deployment files: Dockerfile, docker-compose.yml and
the Kubernetes manifests in deploy/.

Nothing here needs a Docker engine or a cluster: the compose file is checked
as data, the Dockerfile against the Makefile's release build (and its stub
stage against cargo's view of the workspace), and the manifests against the
Kubernetes OpenAPI schemas bundled by the `kubernetes-validate` package plus
the references between them (labels, ports, keys).

    .local/venv/bin/python -m unittest discover -s tests/deploy -v

Needs PyYAML and kubernetes-validate (scripts/test.sh installs both).
TRONPAY_REPO_ROOT points the checks at another copy of the repository (used
to check that each test fails on a broken copy).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(os.environ.get("TRONPAY_REPO_ROOT") or Path(__file__).resolve().parents[2])

# The Kubernetes version whose schemas the manifests must satisfy (the oldest
# supported in deploy/README.md is 1.25; 1.30 is a widely deployed one).
KUBERNETES_VERSION = "1.30"
NAMESPACE = "tronpay"
IMAGE = "ghcr.io/tronpay/tronpay:0.1.0"

# Binary and port of each long-running tronpay service.
SERVICES = {
    "tronpay-api": {"binary": "tronpay-api", "port": 5000, "bind": "BIND", "health": "/health"},
    "tronpay-chain-watcher": {
        "binary": "tronpay-chain-watcher",
        "port": 5001,
        "bind": "WATCHER_BIND",
        "health": "/health",
    },
    "tronpay-webhook-dispatcher": {
        "binary": "tronpay-webhook-dispatcher",
        "port": 5002,
        "bind": "DISPATCHER_BIND",
        "health": "/health",
    },
    "tronpay-sandbox": {
        "binary": "tronpay-sandbox",
        "port": 8090,
        "bind": "SANDBOX_BIND",
        "health": "/sandbox/status",
    },
}
BINARIES = ["tronpay-api", "tronpay-chain-watcher", "tronpay-webhook-dispatcher", "tronpay-sandbox", "tronpay"]
MIGRATE_COMMAND = ["tronpay", "db", "create-tables"]


def load_yaml(path):
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def interpolate(value):
    """Compose-style `${VAR:-default}` / `${VAR-default}` / `${VAR}` with an
    empty environment: what the file means when nothing is set."""
    if not isinstance(value, str):
        return value
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
    return pattern.sub(lambda match: match.group(2) or "", value)


# ---------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------


class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.compose = load_yaml(ROOT / "docker-compose.yml")
        cls.services = cls.compose["services"]

    def env(self, name):
        environment = self.services[name].get("environment") or {}
        self.assertIsInstance(environment, dict, f"{name}: environment should be a mapping")
        return {key: interpolate(value) for key, value in environment.items()}

    def test_services_exist(self):
        expected = {"postgres", "rabbitmq", "migrate", *SERVICES}
        self.assertEqual(expected - set(self.services), set(), "services missing from docker-compose.yml")
        self.assertTrue(self.services["postgres"]["image"].startswith("postgres:15"))
        self.assertRegex(self.services["rabbitmq"]["image"], r"^rabbitmq:3(-management)?-alpine$")

    def test_long_running_services_have_health_checks(self):
        for name, service in self.services.items():
            if name == "migrate":
                continue
            with self.subTest(service=name):
                test = (service.get("healthcheck") or {}).get("test")
                self.assertTrue(test, f"{name} has no healthcheck")
                self.assertFalse((service.get("healthcheck") or {}).get("disable"), f"{name}: healthcheck disabled")
        self.assertIn("pg_isready", " ".join(self.services["postgres"]["healthcheck"]["test"]))
        self.assertEqual(
            self.services["rabbitmq"]["healthcheck"]["test"][-3:], ["rabbitmq-diagnostics", "-q", "ping"]
        )

    def test_tronpay_health_checks_hit_the_service_port(self):
        for name, spec in SERVICES.items():
            with self.subTest(service=name):
                test = self.services[name]["healthcheck"]["test"]
                self.assertEqual(test[0], "CMD", f"{name}: exec-form health check expected")
                self.assertEqual(test[1], "curl")
                self.assertIn("-fsS", test)
                self.assertEqual(test[-1], f"http://127.0.0.1:{spec['port']}{spec['health']}")
                # Listening on all interfaces: published ports reach it too.
                self.assertEqual(self.env(name).get(spec["bind"]), f"0.0.0.0:{spec['port']}")

    def test_services_run_their_binary(self):
        self.assertEqual(self.services["migrate"]["command"], MIGRATE_COMMAND)
        for name, spec in SERVICES.items():
            with self.subTest(service=name):
                self.assertEqual(self.services[name]["command"], [spec["binary"]])

    def test_depends_on_uses_conditions(self):
        for name, service in self.services.items():
            depends = service.get("depends_on")
            if depends is None:
                continue
            with self.subTest(service=name):
                self.assertIsInstance(depends, dict, f"{name}: depends_on must name conditions, not a list")
                for dependency, options in depends.items():
                    self.assertIn(dependency, self.services, f"{name} depends on unknown {dependency}")
                    self.assertIn(
                        (options or {}).get("condition"),
                        {"service_healthy", "service_completed_successfully"},
                        f"{name} -> {dependency}: condition missing",
                    )
                    if dependency == "migrate":
                        self.assertEqual(options["condition"], "service_completed_successfully")
                    else:
                        self.assertIn("healthcheck", self.services[dependency])
                        self.assertEqual(options["condition"], "service_healthy")
        migrate = self.services["migrate"]
        self.assertEqual(migrate["depends_on"]["postgres"]["condition"], "service_healthy")
        self.assertEqual(str(migrate.get("restart")), "no")
        for name in ["tronpay-api", "tronpay-chain-watcher", "tronpay-webhook-dispatcher"]:
            with self.subTest(service=name):
                depends = self.services[name]["depends_on"]
                self.assertEqual(depends["migrate"]["condition"], "service_completed_successfully")
                self.assertEqual(depends["rabbitmq"]["condition"], "service_healthy")
        # A dependency on a profiled service breaks `up` without that profile.
        for name, service in self.services.items():
            for dependency in service.get("depends_on") or {}:
                if self.services[dependency].get("profiles"):
                    self.assertEqual(service.get("profiles"), self.services[dependency]["profiles"])

    def test_restart_and_stop_grace_period(self):
        for name, service in self.services.items():
            if name == "migrate":
                continue
            with self.subTest(service=name):
                self.assertEqual(service.get("restart"), "unless-stopped")
        for name in SERVICES:
            with self.subTest(service=name):
                grace = str(self.services[name].get("stop_grace_period", ""))
                match = re.fullmatch(r"(\d+)s", grace)
                self.assertTrue(match, f"{name}: stop_grace_period like '30s' expected, got {grace!r}")
                self.assertGreaterEqual(int(match.group(1)), 30)

    def test_scalable_services_publish_no_host_port(self):
        for name in ["tronpay-webhook-dispatcher", "tronpay-chain-watcher"]:
            with self.subTest(service=name):
                service = self.services[name]
                self.assertNotIn("ports", service, f"{name} publishes a port: --scale would collide")
                self.assertNotIn("container_name", service, f"{name} has a container_name: --scale would fail")
        for name in SERVICES:
            self.assertNotIn("container_name", self.services[name])

    def test_published_ports_are_loopback_only(self):
        expected = {"tronpay-api": ("API_PORT", 5000), "tronpay-sandbox": ("SANDBOX_PORT", 8090)}
        for name, (variable, port) in expected.items():
            with self.subTest(service=name):
                self.assertEqual(self.services[name]["ports"], [f"127.0.0.1:${{{variable}:-{port}}}:{port}"])
        for name in ["postgres", "rabbitmq"]:
            self.assertNotIn("ports", self.services[name], f"{name} should stay on the compose network")

    def test_sandbox_is_in_its_profile(self):
        self.assertEqual(self.services["tronpay-sandbox"].get("profiles"), ["sandbox"])
        for name, service in self.services.items():
            if name != "tronpay-sandbox":
                self.assertNotIn("profiles", service, f"{name} would not start by default")

    def test_tronpay_services_share_one_image(self):
        names = ["migrate", *SERVICES]
        images = {interpolate(self.services[name].get("image")) for name in names}
        builds = {json.dumps(self.services[name].get("build"), sort_keys=True) for name in names}
        self.assertEqual(len(images), 1, f"different images: {images}")
        self.assertEqual(len(builds), 1, f"different builds: {builds}")
        self.assertTrue(next(iter(images)), "the shared image needs a name (so it is built once)")
        build = self.services["migrate"]["build"]
        self.assertEqual(build.get("context"), ".")
        self.assertIn(build.get("dockerfile", "Dockerfile"), {"Dockerfile", "./Dockerfile"})
        self.assertIn("x-tronpay", self.compose, "shared settings belong in the x-tronpay extension field")

    def test_connection_urls_point_at_the_compose_services(self):
        postgres = self.services["postgres"]["environment"]
        rabbitmq = self.services["rabbitmq"].get("environment") or {}
        needs = {
            "migrate": ["DATABASE_URL"],
            "tronpay-api": ["DATABASE_URL", "RABBITMQ_URL"],
            "tronpay-chain-watcher": ["DATABASE_URL", "RABBITMQ_URL"],
            "tronpay-webhook-dispatcher": ["DATABASE_URL", "RABBITMQ_URL"],
        }
        for name, keys in needs.items():
            env = self.env(name)
            with self.subTest(service=name):
                for key in keys:
                    self.assertIn(key, env, f"{name}: {key} missing")
                if "DATABASE_URL" in keys:
                    url = urllib.parse.urlsplit(env["DATABASE_URL"])
                    self.assertIn(url.scheme, {"postgres", "postgresql"})
                    self.assertEqual((url.hostname, url.port or 5432), ("postgres", 5432))
                    self.assertEqual(url.username, postgres["POSTGRES_USER"])
                    self.assertEqual(url.password, postgres["POSTGRES_PASSWORD"])
                    self.assertEqual(url.path.lstrip("/"), postgres["POSTGRES_DB"])
                if "RABBITMQ_URL" in keys:
                    url = urllib.parse.urlsplit(env["RABBITMQ_URL"])
                    self.assertEqual(url.scheme, "amqp")
                    self.assertEqual((url.hostname, url.port or 5672), ("rabbitmq", 5672))
                    self.assertEqual(url.username, rabbitmq.get("RABBITMQ_DEFAULT_USER", "guest"))
                    self.assertEqual(url.password, rabbitmq.get("RABBITMQ_DEFAULT_PASS", "guest"))
        watcher = self.env("tronpay-chain-watcher")
        self.assertEqual(watcher.get("TRON_NODE_URL"), "https://api.trongrid.io")
        self.assertEqual(
            self.services["tronpay-chain-watcher"]["environment"]["TRON_NODE_URL"],
            "${TRON_NODE_URL:-https://api.trongrid.io}",
        )

    def test_header_documents_the_sandbox_trial_and_scaling(self):
        text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
        header = text[: text.index("services:")]
        self.assertIn("TRON_NODE_URL=http://tronpay-sandbox:8090", header)
        self.assertIn("--profile sandbox up", header)
        self.assertIn("--scale tronpay-webhook-dispatcher=", header)

    def test_make_up_names_compose_services_that_exist(self):
        # scripts/up.sh (compose mode) starts, stops and runs services by
        # name; a renamed service would only fail on a machine with Docker.
        script = (ROOT / "scripts" / "up.sh").read_text(encoding="utf-8")
        named = set()
        for line in script.splitlines():
            line = line.split("#")[0]
            if "docker compose" not in line or line.strip().startswith("echo"):
                continue
            words = line.split("docker compose", 1)[1].replace(")", " ").replace('"', " ").split()
            args, skip = [], False
            for word in words:
                if word.startswith((">", "|", "&", "2>", "]", ";")):
                    break  # the end of the command
                if skip or word in ("--profile", "--status", "--scale"):
                    skip = not skip  # an option and its value
                elif not word.startswith("-"):
                    args.append(word)
            verb, services = args[0], args[1:]
            # `run SERVICE COMMAND…`: only the first word is a service.
            named |= set(services[:1] if verb == "run" else services)
        self.assertIn("tronpay-sandbox", named)
        self.assertIn("migrate", named)
        self.assertEqual(named - set(self.services), set(), "up.sh names services docker-compose.yml lacks")
        # The chain is reset when a new sandbox starts, as natively.
        self.assertIn("tronpay chain reset --yes", script)


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------


def dockerfile_instructions(path):
    """[(stage index, INSTRUCTION, arguments)], continuation lines joined and
    comment lines dropped (as Docker does)."""
    instructions, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            instructions.append(current.strip())
        current = ""
    result, stage = [], -1
    for text in instructions:
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append((stage, keyword, arguments.strip()))
    return result


def stage_names(instructions):
    names = {}
    for stage, keyword, arguments in instructions:
        if keyword == "FROM":
            parts = arguments.split()
            if len(parts) >= 3 and parts[-2].upper() == "AS":
                names[parts[-1]] = stage
    return names


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.instructions = dockerfile_instructions(ROOT / "Dockerfile")
        cls.last_stage = max(stage for stage, _, _ in cls.instructions)
        cls.stages = stage_names(cls.instructions)

    def release_build(self):
        """`make -s -n build`: the Makefile's RELEASE_BUILD command."""
        output = subprocess.run(
            ["make", "-s", "-n", "build"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
        self.assertEqual(len(output.splitlines()), 1, f"make -n build printed more than one command: {output!r}")
        self.assertTrue(output.startswith("cargo build --release"), output)
        return output

    def in_stage(self, stage, keyword):
        return [arguments for index, kw, arguments in self.instructions if index == stage and kw == keyword]

    def test_multi_stage(self):
        froms = [arguments for _, keyword, arguments in self.instructions if keyword == "FROM"]
        self.assertGreaterEqual(len(froms), 2)
        runtime = froms[-1].split()[0]
        self.assertEqual(runtime, "debian:bookworm-slim")
        for image in froms[:-1]:
            self.assertRegex(image.split()[0], r"^rust:\d+\.\d+(\.\d+)?-bookworm$", "build on the runtime's Debian")

    def test_rust_image_is_recent_enough(self):
        workspace = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
        required = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)', workspace)
        self.assertTrue(required, "workspace rust-version not found")
        for _, keyword, arguments in self.instructions:
            if keyword == "FROM" and arguments.startswith("rust:"):
                major, minor = map(int, re.match(r"rust:(\d+)\.(\d+)", arguments).groups())
                self.assertGreaterEqual((major, minor), tuple(map(int, required.groups())))

    def test_runs_as_non_root(self):
        users = self.in_stage(self.last_stage, "USER")
        self.assertTrue(users, "the runtime stage sets no USER (it would run as root)")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, {"root", "0"})
        self.assertEqual(user, "10001", "numeric uid 10001 (the manifests' runAsUser)")

    def test_cargo_build_is_the_makefile_release_build(self):
        expected = self.release_build()
        builds = [
            (stage, arguments)
            for stage, keyword, arguments in self.instructions
            if keyword == "RUN" and re.search(r"\bcargo\s+build\b", arguments)
        ]
        self.assertTrue(builds, "no RUN cargo build in the Dockerfile")
        for _, arguments in builds:
            self.assertEqual(arguments, expected, "every cargo build in the Dockerfile must be RELEASE_BUILD")
        # The stage the runtime copies the binaries from ends with that build.
        build_stage = builds[-1][0]
        self.assertEqual(self.in_stage(build_stage, "RUN")[-1], expected)

    def test_release_build_produces_the_binaries(self):
        build = self.release_build()
        packages = re.findall(r"-p\s+(\S+)", build)
        binaries = set()
        for manifest in (ROOT / "crates").glob("*/Cargo.toml"):
            text = manifest.read_text(encoding="utf-8")
            name = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M).group(1)
            if name in packages or "--workspace" in build.split():
                binaries |= set(re.findall(r'\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', text))
        self.assertEqual(set(BINARIES) - binaries, set(), "RELEASE_BUILD does not build these binaries")

    def test_runtime_has_every_binary(self):
        copies = self.in_stage(self.last_stage, "COPY")
        copied = set()
        for arguments in copies:
            words = shlex.split(arguments)
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if source_stage is None:
                continue
            self.assertIn(source_stage, self.stages, f"COPY --from={source_stage}: no such stage")
            paths = [w for w in words if not w.startswith("--")][:-1]
            copied |= {Path(p).name for p in paths if "/target/release/" in p}
        self.assertEqual(set(BINARIES) - copied, set(), "binaries missing from the runtime image")

    def test_services_listen_on_all_interfaces(self):
        env = {}
        for arguments in self.in_stage(self.last_stage, "ENV"):
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                env[key] = value
        for name, spec in SERVICES.items():
            with self.subTest(service=name):
                self.assertEqual(env.get(spec["bind"]), f"0.0.0.0:{spec['port']}")
        for command in self.in_stage(self.last_stage, "CMD") + self.in_stage(self.last_stage, "ENTRYPOINT"):
            self.assertNotIn("127.0.0.1", command)

    def test_sources_arrive_before_the_final_build(self):
        """The real sources (and the migrations tronpay-db embeds) are copied,
        and their mtimes refreshed, between the dependency build and the final
        build; otherwise the stub binaries would be shipped."""
        expected = self.release_build()
        runs = [i for i, (_, kw, a) in enumerate(self.instructions) if kw == "RUN" and a == expected]
        self.assertGreaterEqual(len(runs), 2, "expected a cached dependency build and the final build")
        between = self.instructions[runs[-2] + 1 : runs[-1]]
        copied = {shlex.split(a)[0] for _, kw, a in between if kw == "COPY"}
        self.assertTrue({"crates", "migrations"} <= copied, f"copied between the builds: {copied}")
        self.assertTrue(any(kw == "RUN" and "touch" in a for _, kw, a in between), "sources not touched")

    @unittest.skipUnless(shutil.which("cargo"), "cargo not installed")
    def test_stub_workspace_has_the_real_targets(self):
        """Runs the planner stage's script on this workspace and compares
        cargo's view of the stub workspace (members, lib/bin targets) with the
        real one, so the dependency layer compiles what the real build needs."""
        planner = self.stages.get("planner")
        self.assertIsNotNone(planner, "no `planner` stage")
        runs = self.in_stage(planner, "RUN")
        self.assertEqual(len(runs), 1)
        with tempfile.TemporaryDirectory() as temp:
            plan = Path(temp) / "plan"
            script = runs[0].replace("/plan", str(plan))
            subprocess.run(["sh", "-c", script], cwd=ROOT, check=True, capture_output=True)
            self.assertTrue((plan / "Cargo.lock").exists())
            self.assertEqual([p for p in plan.rglob("*.rs") if p.read_text().strip() not in {"", "fn main() {}"}], [])
            self.assertEqual(self.targets(plan / "Cargo.toml"), self.targets(ROOT / "Cargo.toml"))

    def targets(self, manifest):
        output = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1", "--manifest-path", str(manifest)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        kinds = {"lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro", "bin", "custom-build"}
        return {
            package["name"]: sorted(
                (",".join(target["kind"]), target["name"])
                for target in package["targets"]
                if kinds & set(target["kind"])
            )
            for package in json.loads(output)["packages"]
        }

    def test_dockerignore_keeps_the_context_small(self):
        ignored = {
            line.strip().rstrip("/")
            for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        }
        for entry in [".git", ".local"]:
            self.assertIn(entry, ignored)
        self.assertTrue({"target", "**/target", "/target"} & ignored, "target/ must not be sent to Docker")
        for needed in ["Cargo.toml", "Cargo.lock", "crates", "migrations"]:
            self.assertNotIn(needed, ignored)


# ---------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------

DEPLOYMENTS = {
    "tronpay-api": {"binary": "tronpay-api", "port": 5000, "bind": "BIND"},
    "tronpay-chain-watcher": {"binary": "tronpay-chain-watcher", "port": 5001, "bind": "WATCHER_BIND"},
    "tronpay-webhook-dispatcher": {"binary": "tronpay-webhook-dispatcher", "port": 5002, "bind": "DISPATCHER_BIND"},
}
# Secret keys each workload must receive.
NEEDS = {
    "tronpay-migrate": {"DATABASE_URL"},
    "tronpay-api": {"DATABASE_URL", "RABBITMQ_URL"},
    "tronpay-chain-watcher": {"DATABASE_URL", "RABBITMQ_URL", "TRONGRID_API_KEY"},
    "tronpay-webhook-dispatcher": {"DATABASE_URL", "RABBITMQ_URL", "WEBHOOK_SECRET"},
}
SECRET_KEYS = {"DATABASE_URL", "RABBITMQ_URL", "WEBHOOK_SECRET", "TRONGRID_API_KEY"}


def matches(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


class KubernetesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.deploy = ROOT / "deploy"
        cls.files = sorted(p for p in cls.deploy.glob("*.y*ml") if p.name != "kustomization.yaml")
        cls.documents = []  # (file name, resource)
        for path in cls.files:
            with open(path, encoding="utf-8") as file:
                for document in yaml.safe_load_all(file):
                    if document:
                        cls.documents.append((path.name, document))
        cls.resources = [document for _, document in cls.documents]

    def of_kind(self, kind):
        return [r for r in self.resources if r.get("kind") == kind]

    def one(self, kind, name):
        found = [r for r in self.of_kind(kind) if r["metadata"]["name"] == name]
        self.assertEqual(len(found), 1, f"expected one {kind} {name}, found {len(found)}")
        return found[0]

    def pod_specs(self):
        """(workload name, pod spec) of every Deployment and Job."""
        return [(r["metadata"]["name"], r["spec"]["template"]["spec"]) for r in self.of_kind("Deployment") + self.of_kind("Job")]

    def test_manifests_validate_against_the_kubernetes_schemas(self):
        self.assertTrue(self.documents, "no manifests in deploy/")
        for filename, resource in self.documents:
            with self.subTest(file=filename, resource=f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"):
                try:
                    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as error:
                    path = ".".join(str(part) for part in error.path)
                    self.fail(f"{filename}: {path}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError as error:
                    self.fail(f"{filename}: {error.message}")

    def test_kustomization_lists_every_manifest(self):
        kustomization = load_yaml(self.deploy / "kustomization.yaml")
        self.assertEqual(kustomization.get("namespace"), NAMESPACE)
        self.assertEqual(sorted(kustomization["resources"]), [p.name for p in self.files])
        image_names = {image["name"] for image in kustomization.get("images", [])}
        self.assertEqual(image_names, {IMAGE.rsplit(":", 1)[0]})

    @unittest.skipUnless(shutil.which("kubectl"), "kubectl not installed")
    def test_kustomize_builds(self):
        result = subprocess.run(["kubectl", "kustomize", str(self.deploy)], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        built = [r for r in yaml.safe_load_all(result.stdout) if r]
        self.assertEqual(len(built), len(self.resources))

    def test_everything_is_in_the_namespace(self):
        self.one("Namespace", NAMESPACE)
        for resource in self.resources:
            if resource["kind"] == "Namespace":
                continue
            with self.subTest(resource=f"{resource['kind']}/{resource['metadata']['name']}"):
                self.assertEqual(resource["metadata"].get("namespace"), NAMESPACE)

    def test_the_deployments_exist(self):
        self.assertEqual({d["metadata"]["name"] for d in self.of_kind("Deployment")}, set(DEPLOYMENTS))

    def test_deployments_have_probes_on_their_port(self):
        config = self.one("ConfigMap", "tronpay-config")["data"]
        for name, spec in DEPLOYMENTS.items():
            deployment = self.one("Deployment", name)
            containers = deployment["spec"]["template"]["spec"]["containers"]
            self.assertEqual(len(containers), 1, f"{name}: one container expected")
            container = containers[0]
            with self.subTest(deployment=name):
                self.assertEqual(container.get("command"), [spec["binary"]])
                ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
                self.assertEqual(list(ports.values()), [spec["port"]], f"{name}: container port")
                # The service listens where the probes and ports say.
                self.assertEqual(config.get(spec["bind"]), f"0.0.0.0:{spec['port']}")
                for probe, path in [("readinessProbe", "/health"), ("livenessProbe", "/health/live")]:
                    http = (container.get(probe) or {}).get("httpGet")
                    self.assertTrue(http, f"{name}: {probe} with httpGet missing")
                    self.assertEqual(http["path"], path, f"{name}: {probe} path")
                    port = ports.get(http["port"], http["port"])
                    self.assertEqual(port, spec["port"], f"{name}: {probe} port {http['port']}")
                startup = container.get("startupProbe")
                if startup:
                    port = startup["httpGet"]["port"]
                    self.assertEqual(ports.get(port, port), spec["port"])

    def test_pods_are_scraped_on_their_port(self):
        for name, spec in DEPLOYMENTS.items():
            with self.subTest(deployment=name):
                annotations = self.one("Deployment", name)["spec"]["template"]["metadata"].get("annotations", {})
                self.assertEqual(annotations.get("prometheus.io/scrape"), "true")
                self.assertEqual(annotations.get("prometheus.io/port"), str(spec["port"]))
                self.assertEqual(annotations.get("prometheus.io/path"), "/metrics")

    def test_containers_have_resources_and_a_locked_down_security_context(self):
        for name, pod in self.pod_specs():
            pod_context = pod.get("securityContext") or {}
            for container in pod.get("initContainers", []) + pod["containers"]:
                with self.subTest(workload=name, container=container["name"]):
                    resources = container.get("resources") or {}
                    for section in ["requests", "limits"]:
                        for resource in ["cpu", "memory"]:
                            self.assertIn(resource, resources.get(section) or {}, f"{section}.{resource} missing")
                    context = {**pod_context, **(container.get("securityContext") or {})}
                    self.assertIs(context.get("runAsNonRoot"), True)
                    self.assertEqual(context.get("runAsUser"), 10001)
                    self.assertIs(context.get("readOnlyRootFilesystem"), True)
                    self.assertIs(context.get("allowPrivilegeEscalation"), False)
                    self.assertIn("ALL", (context.get("capabilities") or {}).get("drop", []))
                    self.assertEqual(container.get("image"), IMAGE)

    def test_graceful_shutdown_and_json_logs(self):
        config = self.one("ConfigMap", "tronpay-config")["data"]
        self.assertEqual(config.get("LOG_FORMAT"), "json")
        shutdown = int(config.get("SHUTDOWN_TIMEOUT_SECONDS", 30))
        for name in DEPLOYMENTS:
            pod = self.one("Deployment", name)["spec"]["template"]["spec"]
            with self.subTest(deployment=name):
                self.assertEqual(pod.get("terminationGracePeriodSeconds"), 40)
                self.assertGreater(pod["terminationGracePeriodSeconds"], shutdown)
                env_from = [e.get("configMapRef", {}).get("name") for e in pod["containers"][0].get("envFrom", [])]
                self.assertIn("tronpay-config", env_from, f"{name} does not read the ConfigMap")

    def test_deployment_selectors_match_their_pods(self):
        for deployment in self.of_kind("Deployment"):
            with self.subTest(deployment=deployment["metadata"]["name"]):
                selector = deployment["spec"]["selector"]["matchLabels"]
                self.assertTrue(matches(selector, deployment["spec"]["template"]["metadata"]["labels"]))
                for other in self.of_kind("Deployment"):
                    if other is not deployment:
                        self.assertFalse(
                            matches(selector, other["spec"]["template"]["metadata"]["labels"]),
                            f"selector also matches {other['metadata']['name']}",
                        )

    def test_replicas_and_rollout(self):
        watcher = self.one("Deployment", "tronpay-chain-watcher")["spec"]
        self.assertGreaterEqual(watcher.get("replicas", 1), 2, "a standby watcher is needed")
        self.assertEqual(watcher.get("strategy", {}).get("type", "RollingUpdate"), "RollingUpdate")
        for name in ["tronpay-api", "tronpay-webhook-dispatcher"]:
            self.assertGreaterEqual(self.one("Deployment", name)["spec"].get("replicas", 1), 2)

    def test_autoscalers_target_the_api_and_the_dispatcher(self):
        autoscalers = self.of_kind("HorizontalPodAutoscaler")
        targets = {}
        for hpa in autoscalers:
            self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
            target = hpa["spec"]["scaleTargetRef"]
            self.assertEqual((target["apiVersion"], target["kind"]), ("apps/v1", "Deployment"))
            targets[target["name"]] = hpa["spec"]
        self.assertEqual(set(targets), {"tronpay-api", "tronpay-webhook-dispatcher"})
        for name, spec in targets.items():
            with self.subTest(hpa=name):
                self.one("Deployment", name)
                self.assertEqual((spec["minReplicas"], spec["maxReplicas"]), (2, 10))
                cpu = [m for m in spec["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
                self.assertEqual(cpu[0]["resource"]["target"], {"type": "Utilization", "averageUtilization": 70})

    def test_api_service_selects_the_api_pods(self):
        service = self.one("Service", "tronpay-api")
        selector = service["spec"]["selector"]
        api = self.one("Deployment", "tronpay-api")["spec"]["template"]
        self.assertTrue(matches(selector, api["metadata"]["labels"]), "the Service misses the API pods")
        for name in DEPLOYMENTS:
            if name != "tronpay-api":
                labels = self.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
                self.assertFalse(matches(selector, labels), f"the API Service also selects {name}")
        ports = service["spec"]["ports"]
        self.assertEqual(ports[0]["port"], 80)
        container_ports = {p.get("name"): p["containerPort"] for p in api["spec"]["containers"][0]["ports"]}
        target = ports[0]["targetPort"]
        self.assertEqual(container_ports.get(target, target), 5000)

    def test_services_and_budgets_select_existing_pods(self):
        pods = [d["spec"]["template"] for d in self.of_kind("Deployment")]
        for service in self.of_kind("Service"):
            with self.subTest(service=service["metadata"]["name"]):
                selected = [p for p in pods if matches(service["spec"]["selector"], p["metadata"]["labels"])]
                self.assertEqual(len(selected), 1)
                names = {p.get("name"): p["containerPort"] for p in selected[0]["spec"]["containers"][0]["ports"]}
                for port in service["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    self.assertIn(target, set(names) | set(names.values()), f"targetPort {target}")
        for budget in self.of_kind("PodDisruptionBudget"):
            with self.subTest(pdb=budget["metadata"]["name"]):
                selector = budget["spec"]["selector"]["matchLabels"]
                self.assertEqual(len([p for p in pods if matches(selector, p["metadata"]["labels"])]), 1)
        budgeted = {b["metadata"]["name"] for b in self.of_kind("PodDisruptionBudget")}
        self.assertTrue({"tronpay-api", "tronpay-webhook-dispatcher"} <= budgeted)

    def test_migration_job(self):
        job = self.one("Job", "tronpay-migrate")
        spec = job["spec"]
        self.assertIn("backoffLimit", spec)
        self.assertIn("ttlSecondsAfterFinished", spec)
        pod = spec["template"]["spec"]
        self.assertIn(pod.get("restartPolicy"), {"Never", "OnFailure"})
        self.assertEqual(pod["containers"][0]["command"], MIGRATE_COMMAND)
        for name in DEPLOYMENTS:
            init = self.one("Deployment", name)["spec"]["template"]["spec"].get("initContainers", [])
            for container in init:
                self.assertEqual(container["command"], MIGRATE_COMMAND, f"{name}: unexpected init container")

    def test_config_and_secret_references_resolve(self):
        configmaps = {c["metadata"]["name"]: set(c.get("data", {})) for c in self.of_kind("ConfigMap")}
        secrets = {
            s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {})) for s in self.of_kind("Secret")
        }
        for name, pod in self.pod_specs():
            for container in pod.get("initContainers", []) + pod["containers"]:
                with self.subTest(workload=name, container=container["name"]):
                    received = set()
                    for source in container.get("envFrom", []):
                        if "configMapRef" in source:
                            self.assertIn(source["configMapRef"]["name"], configmaps)
                            received |= configmaps[source["configMapRef"]["name"]]
                        if "secretRef" in source:
                            self.assertIn(source["secretRef"]["name"], secrets)
                            received |= secrets[source["secretRef"]["name"]]
                    for variable in container.get("env", []):
                        reference = variable.get("valueFrom", {})
                        if "secretKeyRef" in reference:
                            ref = reference["secretKeyRef"]
                            self.assertIn(ref["name"], secrets, f"{variable['name']}: no Secret {ref['name']}")
                            self.assertIn(ref["key"], secrets[ref["name"]], f"{variable['name']}: no key {ref['key']}")
                        if "configMapKeyRef" in reference:
                            ref = reference["configMapKeyRef"]
                            self.assertIn(ref["name"], configmaps, f"{variable['name']}: no ConfigMap {ref['name']}")
                            self.assertIn(ref["key"], configmaps[ref["name"]], f"{variable['name']}: no key {ref['key']}")
                        received.add(variable["name"])
                    needed = NEEDS[name] if container["name"] != "migrate" else NEEDS["tronpay-migrate"]
                    self.assertEqual(needed - received, set(), "settings the service needs")

    def test_secret_holds_placeholders_only(self):
        secret = self.one("Secret", "tronpay-secrets")
        values = secret.get("stringData", {})
        self.assertEqual(set(values), SECRET_KEYS)
        for key, value in values.items():
            if key == "TRONGRID_API_KEY":
                # Optional: empty means anonymous, a placeholder would be sent.
                self.assertEqual(value, "", "TRONGRID_API_KEY looks like a real key")
            else:
                self.assertIn("change-me", value, f"{key} looks like a real credential")
        config = self.one("ConfigMap", "tronpay-config")["data"]
        self.assertEqual(SECRET_KEYS & set(config), set(), "credentials belong in the Secret")


if __name__ == "__main__":
    unittest.main()


# ---------------------------------------------------------------------------
# deploy/monitoring/: alert rules, their unit tests, the Grafana dashboard
# ---------------------------------------------------------------------------


def promtool():
    """Debian's promtool (scripts/test.sh installs the `prometheus` package)."""
    found = shutil.which("promtool")
    if not found:
        raise AssertionError("promtool not found: `make test` installs Debian's prometheus package")
    return found


class MonitoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.monitoring = ROOT / "deploy" / "monitoring"
        cls.rules = load_yaml(cls.monitoring / "alerts.yml")
        with open(cls.monitoring / "grafana-dashboard.json", encoding="utf-8") as file:
            cls.dashboard = json.load(file)
        cls.sources = "\n".join(
            path.read_text(encoding="utf-8") for path in (ROOT / "crates").glob("*/src/**/*.rs")
        )

    def run_promtool(self, *args):
        result = subprocess.run([promtool(), *args], cwd=self.monitoring, capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_the_rules_are_valid(self):
        self.assertIn("SUCCESS", self.run_promtool("check", "rules", "alerts.yml"))

    def test_the_rules_pass_their_unit_tests(self):
        self.assertIn("SUCCESS", self.run_promtool("test", "rules", "alerts.test.yml"))

    def test_every_alert_has_a_unit_test_and_what_the_issue_names(self):
        alerts = {rule["alert"] for group in self.rules["groups"] for rule in group["rules"]}
        tested = {
            case["alertname"]
            for test in load_yaml(self.monitoring / "alerts.test.yml")["tests"]
            for case in test["alert_rule_test"]
        }
        self.assertEqual(alerts, tested)
        for named in ["ChainLag", "NodeErrors", "NoNewBlock", "OutboxBacklogOld", "DeadWebhooks",
                      "WebhookSuccessRateLow", "DatabaseDown", "DatabasePoolTimeouts", "PaymentsStuckDetected"]:
            self.assertIn(f"Tronpay{named}", alerts)

    def metric_names(self, expressions):
        names = set()
        for expression in expressions:
            for name in re.findall(r"\b((?:tronpay|http)_[a-z_]+)", expression):
                names.add(re.sub(r"_(bucket|count|sum)$", "", name))
        return names

    def test_the_rules_and_the_dashboard_use_series_the_services_export(self):
        expressions = [rule["expr"] for group in self.rules["groups"] for rule in group["rules"]]
        expressions += [
            target["expr"]
            for panel in self.dashboard["panels"]
            for target in panel.get("targets", [])
        ]
        names = self.metric_names(expressions)
        self.assertGreater(len(names), 15)
        for name in sorted(names):
            with self.subTest(series=name):
                self.assertIn(f'"{name}"', self.sources, f"{name} is not recorded anywhere in crates/")

    def test_the_dashboard_is_importable(self):
        self.assertEqual(self.dashboard["uid"], "tronpay")
        ids = [panel["id"] for panel in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for panel in self.dashboard["panels"]:
            if panel["type"] == "row":
                continue
            with self.subTest(panel=panel["title"]):
                self.assertEqual(panel["datasource"]["uid"], "${datasource}")
                self.assertTrue(panel["targets"])
