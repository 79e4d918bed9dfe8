// Runs the GraphQL-over-HTTP spec audits of the `graphql-http` package against a Loom server
// and prints each result as a JSON line ({id, name, status, reason?}).
//   node audit.mjs <http url of /graphql> <token>
// Every audit request carries the token: Loom answers 401 to anonymous operations.
import { serverAudits } from "graphql-http";

const [url, token] = process.argv.slice(2);

function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

for (const audit of serverAudits({ url, fetchFn: fetchWithToken })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== "ok") {
    line.reason = result.reason;
    line.httpStatus = result.response.status;
    line.body = await result.response.text();
  }
  console.log(JSON.stringify(line));
}
