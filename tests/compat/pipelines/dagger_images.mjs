// Images out through the official Dagger TypeScript SDK (npm @dagger.io/dagger): a publish with
// a platform variant (an image index), a Docker-format export, and a tarball imported back.
// Run by tests/compat/test_dagger_images.py from a copy next to a `node_modules` link to the
// compat node project, inside `dirk run`. Prints one JSON line of results.
//
// Usage: node dagger_images.mjs IMAGE ADDRESS NONCE

import { connect, ImageMediaTypes } from "@dagger.io/dagger";

async function pipeline(client, image, address, nonce) {
  const out = {};
  const step = async (name, value) => {
    try {
      out[name] = await value;
    } catch (error) {
      out[name] = { error: `${error.name}: ${error.message}` };
    }
  };
  const app = client
    .container()
    .from(image)
    .withNewFile("/nonce.txt", `${nonce}\n`)
    .withEnvVariable("COMPAT", "typescript")
    .withEntrypoint(["cat"])
    .withDefaultArgs(["/nonce.txt"]);
  const arm = client
    .container({ platform: "linux/arm64" })
    .withNewFile("/nonce.txt", `arm64 ${nonce}\n`);
  await step("publish", app.publish(address, { platformVariants: [arm] }));
  await step("export_docker", app.export("docker.tar", { mediaTypes: ImageMediaTypes.Docker }));
  const imported = client.container().import_(app.asTarball());
  await step("imported_stdout", imported.withExec([], { useEntrypoint: true }).stdout());
  return out;
}

const [image, address, nonce] = process.argv.slice(2);
await connect(async (client) => {
  const result = await pipeline(client, image, address, nonce);
  console.log(JSON.stringify(result));
});
