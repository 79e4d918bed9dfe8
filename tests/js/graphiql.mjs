// Drives Loom's GraphiQL page in headless Chromium as a new user would, and prints what it
// saw as one JSON object (tests/api/test_graphiql_browser.py checks it):
//   node graphiql.mjs <http url of /graphql> <token> <chromium binary> <fresh profile dir>
//                     <id of a finished execution>
// 1. Without a token the page says how to supply one (and the schema fetch is a 401).
// 2. A token pasted in the token field loads the schema (the Docs pane shows `Query`) and
//    runs a query.
// 3. After a reload the token is still there.
// 4. A subscription runs at once over the websocket (not over HTTP).
// 5. Forgotten, then given in the Headers tab instead: the schema loads again.
// Every request the browser makes, websockets included, is recorded.
import { chromium } from "playwright-core";

const [url, token, executablePath, profileDir, executionId] = process.argv.slice(2);
const WAIT_MS = 20_000;

const context = await chromium.launchPersistentContext(profileDir, {
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const report = { requests: [], pageErrors: [], consoleErrors: [], notices: {}, results: {} };
context.on("request", (request) => report.requests.push(request.url()));
const page = context.pages()[0] ?? (await context.newPage());
page.on("websocket", (socket) => report.requests.push(socket.url()));
page.on("pageerror", (error) => report.pageErrors.push(error.message));
page.on("console", (message) => {
  if (message.type() === "error") report.consoleErrors.push(message.text());
});
page.setDefaultTimeout(WAIT_MS);

const notice = page.locator("#loom-notice");
const docs = page.locator(".graphiql-doc-explorer");

async function noticeContaining(text) {
  await page.waitForFunction(
    (expected) => document.getElementById("loom-notice").textContent.includes(expected),
    text,
  );
  return notice.textContent();
}

async function schemaShown() {
  if (!(await docs.isVisible())) {
    await page.click('button[aria-label="Show Documentation Explorer"]');
  }
  await docs.getByText("Query", { exact: true }).waitFor();
}

// Runs `query` as soon as it is in the editor; returns the response once it shows `marker`.
async function run(query, marker) {
  await page.evaluate((text) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(text);
  }, query);
  await page.click(".graphiql-execute-button");
  await page.waitForFunction(
    (expected) => document.querySelector(".graphiql-response").textContent.includes(expected),
    marker,
  );
  const text = await page.evaluate(() =>
    document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue(),
  );
  return JSON.parse(text);
}

// `{ <step>: viewer { name } }`: the alias tells this step's result from an earlier one.
function viewer(step) {
  return run(`{ ${step}: viewer { name } }`, `"${step}"`);
}

try {
  await page.goto(url);
  report.notices.withoutToken = await noticeContaining("401");

  await page.fill("#loom-token", token);
  await page.press("#loom-token", "Enter");
  await schemaShown();
  report.notices.withToken = await notice.textContent();
  report.results.withToken = await viewer("withToken");

  await page.reload();
  report.tokenAfterReload = await page.inputValue("#loom-token");
  await schemaShown();
  report.results.afterReload = await viewer("afterReload");
  report.results.subscription = await run(
    `subscription { executionEvents(executionId: "${executionId}") { type status } }`,
    "EXECUTION_FINISHED",
  );

  await page.click("#loom-forget");
  report.notices.forgotten = await noticeContaining("401");
  await page.getByRole("button", { name: "Headers", exact: true }).click();
  const headersEditor = page.locator(
    '.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror',
  );
  await headersEditor.click();
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${token}` }));
  await schemaShown();
  await page.waitForFunction(() => !document.getElementById("loom-notice").textContent);
  report.results.withHeadersTab = await viewer("withHeadersTab");
} catch (error) {
  report.failure = String(error);
  await page.screenshot({ path: `${profileDir}/failure.png` }).catch(() => {});
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
