// Services through the official Dagger TypeScript SDK (npm @dagger.io/dagger): a busybox httpd
// made a service with asService, bound by alias to a client container that fetches a page, and
// the service's ports and endpoint. Run by tests/compat/test_dagger_services.py from a copy
// next to a `node_modules` link to the compat node project, inside `dirk run`. Prints one
// JSON line of results.
//
// Usage: node dagger_services.mjs IMAGE NONCE

import { connect } from "@dagger.io/dagger";

async function pipeline(client, image, nonce) {
  const web = client
    .container()
    .from(image)
    .withNewFile("/www/index.html", `hello ${nonce}\n`)
    .withExposedPort(8080)
    .asService({ args: ["httpd", "-f", "-p", "8080", "-h", "/www"] });
  const fetched = await client
    .container()
    .from(image)
    .withEnvVariable("NONCE", nonce)
    .withServiceBinding("web", web)
    .withExec(["wget", "-q", "-O-", "http://web:8080/index.html"])
    .stdout();
  const ports = await Promise.all((await web.ports()).map((port) => port.port()));
  const endpoint = await web.endpoint({ scheme: "http" });
  return { fetched, ports, endpoint };
}

const [image, nonce] = process.argv.slice(2);
await connect(async (client) => {
  const result = await pipeline(client, image, nonce);
  console.log(JSON.stringify(result));
});
