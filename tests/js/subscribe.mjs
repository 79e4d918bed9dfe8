// Subscribes to one execution's events with the graphql-ws client, as a browser frontend
// would, and prints each event as a JSON line; exits 0 when the stream completes.
//   node subscribe.mjs <ws url> <token> <execution id>
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, executionId] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
});
const query = `subscription($id: ID!) {
  executionEvents(executionId: $id) { sequence type nodeId status }
}`;
try {
  for await (const result of client.iterate({ query, variables: { id: executionId } })) {
    if (result.errors) {
      console.error(JSON.stringify(result.errors));
      process.exitCode = 1;
      break;
    }
    console.log(JSON.stringify(result.data.executionEvents));
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : JSON.stringify(error));
  process.exitCode = 1;
} finally {
  await client.dispose();
}
