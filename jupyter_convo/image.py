"""Build the runtime image (``jupyter convo build-image``) from wheels made on the host.

The host makes every wheel the image needs (jupyter-convo itself and the runtime's
dependencies, pinned to the versions installed here: the combination the tests ran), puts
them with ``docker/Dockerfile`` into a temporary build context, and has the Docker engine
build it through the ``docker`` SDK. Nothing inside the build reaches the network, so the
build works against any engine (podman's included) on a machine without registry access,
and unchanged dependency layers come from the engine's cache.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROJECT = "jupyter-convo"
DEFAULT_IMAGE_TAG = "jupyter-convo-runtime:latest"
# Requirements the server extension needs and the runtime does not.
SERVER_ONLY_REQUIREMENTS = frozenset({"jupyter-server"})
DOCKERFILE_NAME = "Dockerfile"
# Where a wheel install keeps the Dockerfile (pyproject force-include), else the checkout's.
PACKAGED_DOCKERFILE = Path(__file__).parent / "_docker" / DOCKERFILE_NAME
CHECKOUT_DOCKERFILE = Path(__file__).resolve().parent.parent / "docker" / DOCKERFILE_NAME
BUILD_TIMEOUT = 1800
PIP_OUTPUT_TAIL = 4000

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says which step failed and why."""


def python_version() -> str:
    """``MAJOR.MINOR`` of this interpreter: the wheels are made for it."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_base_image() -> str:
    """The slim official Python image of the host's Python version."""
    return f"python:{python_version()}-slim"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> list[str]:
    """jupyter-convo's own requirements minus extras and the server-only ones."""
    from packaging.requirements import Requirement

    requirements = []
    for text in importlib.metadata.requires(PROJECT) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        if _canonical(requirement.name) in SERVER_ONLY_REQUIREMENTS:
            continue
        requirements.append(str(requirement))
    return requirements


def installed_pins() -> list[str]:
    """``name==version`` of every distribution installed from an index here (pip
    constraints: the image gets the versions the host runs)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or _canonical(name) == PROJECT or "+" in dist.version:
            continue
        direct_url = dist.read_text("direct_url.json")
        if direct_url and "url" in json.loads(direct_url):
            continue  # installed from a path or URL: no index has this exact build
        pins.setdefault(_canonical(name), f"{_canonical(name)}=={dist.version}")
    return sorted(pins.values())


def project_source() -> Path | None:
    """The checkout jupyter-convo runs from (an editable install), if any."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{PROJECT}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def find_dockerfile() -> Path:
    for path in (PACKAGED_DOCKERFILE, CHECKOUT_DOCKERFILE):
        if path.is_file():
            return path
    raise ImageBuildError(
        f"no Dockerfile found (looked at {PACKAGED_DOCKERFILE} and {CHECKOUT_DOCKERFILE}); "
        "reinstall jupyter-convo"
    )


def _pip(args: Sequence[str], what: str, python: str, env: Mapping[str, str] | None = None) -> None:
    command = [python, "-m", "pip", "--disable-pip-version-check", *args]
    log.info("making %s: %s", what, " ".join(command))
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-PIP_OUTPUT_TAIL:]
        raise ImageBuildError(f"pip could not make {what} (exit {done.returncode}):\n{output}")


def _has_build_backend(python: str) -> bool:
    """Whether ``python`` can build the project without an isolated build environment
    (which would fetch hatchling again for every image build)."""
    done = subprocess.run([python, "-c", "import hatchling"], capture_output=True, check=False)
    return done.returncode == 0


def make_wheels(
    wheels_dir: Path,
    *,
    extra_packages: Iterable[str] = (),
    python: str = sys.executable,
    pin: bool = True,
) -> None:
    """``wheels_dir/deps``: the runtime's dependencies (+ ``requirements.txt`` naming them);
    ``wheels_dir/project``: jupyter-convo."""
    deps = wheels_dir / "deps"
    project = wheels_dir / "project"
    deps.mkdir(parents=True)
    project.mkdir(parents=True)
    requirements = [*runtime_requirements(), *extra_packages]
    (deps / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    args = ["wheel", "--quiet", "--wheel-dir", str(deps)]
    if pin:
        constraints = wheels_dir / "constraints.txt"
        constraints.write_text("\n".join(installed_pins()) + "\n", encoding="utf-8")
        args += ["--constraint", str(constraints)]
    _pip([*args, *requirements], "the dependency wheels", python)
    source = project_source()
    if source is not None:
        isolation = ["--no-build-isolation"] if _has_build_backend(python) else []
        _pip(
            ["wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir", str(project), str(source)],
            "the jupyter-convo wheel",
            python,
            # No build hooks: the runtime needs no JupyterLab extension (no Node build).
            env={"HATCH_BUILD_NO_HOOKS": "true"},
        )
    else:
        version = importlib.metadata.version(PROJECT)
        _pip(
            ["download", "--quiet", "--no-deps", "--dest", str(project), f"{PROJECT}=={version}"],
            f"the {PROJECT} {version} wheel",
            python,
        )


def prepare_context(
    context: Path, *, extra_packages: Iterable[str] = (), python: str = sys.executable
) -> None:
    """Fill an empty directory with the Dockerfile and the wheels."""
    shutil.copy(find_dockerfile(), context / DOCKERFILE_NAME)
    make_wheels(context / "wheels", extra_packages=extra_packages, python=python)


def docker_client(docker_host: str | None = None, *, timeout: int = 60) -> Any:
    """A ``docker.DockerClient`` for ``docker_host`` (else DOCKER_HOST / the default socket)."""
    from .manager.sandboxes.docker import docker_sdk

    try:
        docker = docker_sdk()
    except ImportError as exc:
        raise ImageBuildError(
            "the docker SDK is not installed: pip install 'jupyter-convo[docker]'"
        ) from exc
    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host, timeout=timeout)
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        where = docker_host or "DOCKER_HOST or the default socket"
        raise ImageBuildError(
            f"cannot reach a Docker engine at {where}: {exc}. Start Docker (or podman's "
            "API service: podman system service) or point DOCKER_HOST at it."
        ) from exc


def _build_lines(stream: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The engine's build output line by line; ImageBuildError on a reported error."""
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message")
            raise ImageBuildError(f"the image build failed: {detail}")
        text = chunk.get("stream")
        if text:
            yield from (line for line in str(text).splitlines() if line.strip())


def build_image(
    *,
    tag: str = DEFAULT_IMAGE_TAG,
    base_image: str | None = None,
    extra_packages: Iterable[str] = (),
    docker_host: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Build the runtime image; returns its id."""
    say = progress or (lambda line: log.info("%s", line))
    base = base_image or default_base_image()
    client = docker_client(docker_host, timeout=BUILD_TIMEOUT)
    try:
        with tempfile.TemporaryDirectory(prefix="convo-image-") as tmp:
            context = Path(tmp)
            say(f"making wheels for Python {python_version()} in {context}")
            prepare_context(context, extra_packages=extra_packages)
            say(f"building {tag} from {base}")
            stream = client.api.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE_IMAGE": base, "PYTHON_VERSION": python_version()},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for line in _build_lines(stream):
                say(line)
        image_id = str(client.images.get(tag).id)
    except ImageBuildError:
        raise
    except Exception as exc:  # the SDK's errors: no engine, missing base image, ...
        raise ImageBuildError(f"the image build failed: {exc}") from exc
    finally:
        client.close()
    say(f"built {tag} ({image_id})")
    return image_id


# --- `jupyter convo build-image` -----------------------------------------------------------


def add_build_image_command(sub: Any) -> None:
    """Register ``build-image`` on the CLI's subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "build-image",
        help="build the runtime image for the docker sandbox",
        description=(
            "Build the image that docker-sandboxed conversations run in, from wheels made "
            "here (jupyter-convo and its runtime dependencies): the build needs no network."
        ),
    )
    parser.add_argument("--tag", default=DEFAULT_IMAGE_TAG, help="image name (%(default)s)")
    parser.add_argument(
        "--base",
        default=None,
        help=f"base image with python3 and venv, of Python {python_version()} "
        f"(default: {default_base_image()})",
    )
    parser.add_argument(
        "--with",
        dest="extra_packages",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="one more package for the agent's Python, e.g. pandas (repeatable)",
    )
    parser.add_argument("--docker-host", help="engine URL (default: DOCKER_HOST)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the image id")
    parser.set_defaults(run_local=run_build_image)


def run_build_image(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    try:
        image_id = build_image(
            tag=args.tag,
            base_image=args.base,
            extra_packages=args.extra_packages,
            docker_host=args.docker_host,
            progress=say,
        )
    except ImageBuildError as exc:
        print(f"jupyter convo build-image: {exc}", file=sys.stderr)
        return 1
    if args.quiet:
        print(image_id)
    return 0
