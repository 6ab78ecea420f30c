// A small pipeline written against the official Dagger TypeScript SDK (npm @dagger.io/dagger).
//
// Run by tests/compat/test_dagger_typescript.py from a copy next to a `node_modules` link to the
// compat node project (.cache/compat/node), so `import "@dagger.io/dagger"` finds the installed
// package; either inside `dirk run` or with _EXPERIMENTAL_DAGGER_CLI_BIN naming dirk. Prints one
// JSON line of results on stdout (a failed step as {error: ...}).
//
// Usage: node dagger_pipeline.mjs STYLE IMAGE NONCE
//   STYLE  "connect" (connect(async (client) => ...)) or "dag" (connection() and the global dag)
//   IMAGE  a Python image reference, e.g. 127.0.0.1:5000/python:3.11
//   NONCE  unique per test run: names the cache volume and busts the engine's exec cache
// The host directory `src/` (relative: resolved against the session's working directory) must
// hold hello.txt and sub/nested.txt.

import { connect, connection, dag, ExecError, ReturnType } from "@dagger.io/dagger";

// Each step's result under its name; a step that throws records {error: ...} instead, so one
// unsupported call does not hide how the others fare.
async function pipeline(client, image, nonce) {
  const out = {};
  const step = async (name, value) => {
    try {
      out[name] = await value;
    } catch (error) {
      out[name] = { error: `${error.name}: ${error.message}` };
    }
  };

  const base = client.container().from(image).withEnvVariable("NONCE", nonce);
  const version = "import sys; print('%d.%d' % sys.version_info[:2])";
  await step("python", base.withExec(["python", "-c", version]).stdout());

  const configured = base.withEnvVariable("GREETING", "hello dagger").withWorkdir("/work");
  await step("env", configured.withExec(["sh", "-c", 'echo "$GREETING"']).stdout());
  await step("pwd", configured.withExec(["pwd"]).stdout());
  await step("env_lookup", configured.envVariable("GREETING"));

  const withSrc = configured.withDirectory("/src", client.host().directory("src"));
  await step("host_file", withSrc.withExec(["cat", "/src/hello.txt"]).stdout());
  await step("host_entries", withSrc.directory("/src").entries());
  await step("nested", withSrc.file("/src/sub/nested.txt").contents());

  const written = withSrc.withExec([
    "sh",
    "-c",
    "mkdir -p out && ls /src | tr a-z A-Z > out/listing.txt",
  ]);
  await step("written", written.file("/work/out/listing.txt").contents());
  await step(
    "new_file",
    configured
      .withNewFile("/etc/compat.txt", "made by with_new_file\n")
      .file("/etc/compat.txt")
      .contents(),
  );

  // Leaves awaited together: the client sends these requests concurrently.
  await step(
    "concurrent",
    Promise.all([0, 1, 2].map((i) => base.withExec(["sh", "-c", `echo ${i}`]).stdout())),
  );

  const cacheCounts = async () => {
    const cache = client.cacheVolume(`compat-${nonce}`);
    const counts = [];
    for (const run of ["first", "second"]) {
      const stdout = await base
        .withMountedCache("/cache", cache)
        .withEnvVariable("RUN", run)
        .withExec(["sh", "-c", 'echo "$RUN" >> /cache/runs; wc -l < /cache/runs'])
        .stdout();
      counts.push(stdout.trim());
    }
    return counts;
  };
  await step("cache_counts", cacheCounts());

  const execError = async () => {
    try {
      await base.withExec(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]).sync();
    } catch (error) {
      if (!(error instanceof ExecError)) throw error;
      return {
        exit_code: error.exitCode,
        stdout: error.stdout,
        stderr: error.stderr,
        cmd: error.cmd,
        message: error.message,
      };
    }
    return null;
  };
  await step("exec_error", execError());

  // Dagger answers a command missing from the image as a failed exec with exit code 1.
  const missingCommand = async () => {
    try {
      await base.withExec(["no-such-command", "--flag"]).sync();
    } catch (error) {
      if (!(error instanceof ExecError)) throw error;
      return { exit_code: error.exitCode, stderr: error.stderr, cmd: error.cmd };
    }
    return null;
  };
  await step("missing_command", missingCommand());

  await step(
    "expect_any_exit_code",
    base.withExec(["sh", "-c", "exit 5"], { expect: ReturnType.Any }).exitCode(),
  );

  const afterSync = async () => {
    const synced = await base.withExec(["sh", "-c", "echo synced > /synced.txt"]).sync();
    return await synced.file("/synced.txt").contents();
  };
  await step("after_sync", afterSync());
  return out;
}

const [style, image, nonce] = process.argv.slice(2);
let result;
if (style === "connect") {
  await connect(async (client) => {
    result = await pipeline(client, image, nonce);
  });
} else if (style === "dag") {
  await connection(async () => {
    result = await pipeline(dag, image, nonce);
  });
} else {
  console.error(`unknown style ${style}: use 'connect' or 'dag'`);
  process.exit(2);
}
console.log(JSON.stringify(result));
