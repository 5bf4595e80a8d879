"""The Java compile profile of the local engine: what javac may and may not do with a job's files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecapsule import Job
from codecapsule.engines.local import LocalEngine

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")

# An annotation processor that claims every annotation type: javac would run it on any compile where it is found
# (META-INF/services on the class path, the job's directory). Its side effect is a file and a line on stderr.
PROCESSOR = """
import java.util.Set;
import javax.annotation.processing.*;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.TypeElement;

@SupportedAnnotationTypes("*")
public class Proc extends AbstractProcessor {
    @Override public SourceVersion getSupportedSourceVersion() { return SourceVersion.latestSupported(); }
    @Override public boolean process(Set<? extends TypeElement> annotations, RoundEnvironment env) {
        try { new java.io.File("PROCESSOR-RAN").createNewFile(); } catch (java.io.IOException e) { }
        System.err.println("PROCESSOR-RAN");
        return false;
    }
}
"""


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    e = LocalEngine()
    yield e
    e.close()


@pytest.fixture(scope="module")
def processor_class(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Proc.class, built by the host's javac (trusted: the test's own source)."""
    folder = tmp_path_factory.mktemp("processor")
    (folder / "Proc.java").write_text(PROCESSOR)
    javac = shutil.which("javac")
    assert javac is not None
    subprocess.run([javac, "-d", str(folder), str(folder / "Proc.java")], check=True, capture_output=True)
    return (Path(folder) / "Proc.class").read_bytes()


def test_an_annotation_processor_in_the_job_never_runs(engine: LocalEngine, processor_class: bytes) -> None:
    job = Job.create(
        "public class Main { public static void main(String[] a) { System.out.println(\"main ran\"); } }",
        "java",
        files={
            "Proc.class": processor_class,
            "META-INF/services/javax.annotation.processing.Processor": "Proc\n",
        },
    )
    with engine.compile(job) as artifact:
        assert not artifact.failed, artifact.result
        assert artifact.compile is not None and "PROCESSOR-RAN" not in artifact.compile.output
        names = {name for name, _, _ in artifact.files}
        assert "Main.class" in names and "PROCESSOR-RAN" not in names
        assert engine.run_compiled(artifact).stdout == "main ran\n"
