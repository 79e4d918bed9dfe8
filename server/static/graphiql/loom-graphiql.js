// Loom's GraphiQL page. Every operation needs `Authorization: Bearer <token>`, so:
// - the token field keeps a token in this browser (localStorage) and sends it with every
//   request, unless the Headers tab sets Authorization itself (then that one is sent);
// - the schema is fetched again whenever the token or the Headers tab's Authorization
//   changes, so the Docs pane recovers from a first load without a token;
// - a 401 says how to supply a token.
// Subscriptions go over the websocket (graphql-transport-ws), with the same Authorization
// in the connection_init payload.
(function () {
  "use strict";

  const TOKEN_KEY = "loom.graphiql.token";
  const HEADERS_SETTLE_MS = 400;
  const endpoint = window.location.origin + window.location.pathname;
  const websocketEndpoint = endpoint.replace(/^http/, "ws");
  const tokenInput = document.getElementById("loom-token");
  const notice = document.getElementById("loom-notice");
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  let token = readToken();
  let headersAuthorization = null; // the Authorization of the Headers tab, if it has one
  let headersTimer = null;
  let renderedAuthorization;
  let tokenChanges = 0; // a new token starts a fresh GraphiQL (no stale 401 in its panes)

  function readToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || "";
    } catch (error) {
      return ""; // storage disabled: the token lasts as long as the page
    }
  }

  function saveToken(value) {
    token = value;
    try {
      if (value) window.localStorage.setItem(TOKEN_KEY, value);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (error) {
      // storage disabled: keep the token for this page only
    }
  }

  // What a person may paste: the token, `Bearer <token>` or `Authorization: Bearer <token>`.
  function tokenFrom(text) {
    return text
      .trim()
      .replace(/^authorization\s*:\s*/i, "")
      .replace(/^bearer\s+/i, "")
      .trim();
  }

  function authorization() {
    if (headersAuthorization) return headersAuthorization;
    return token ? "Bearer " + token : null;
  }

  // Notices are built from text nodes: the server's messages are never parsed as HTML.
  function say(isProblem, ...parts) {
    notice.replaceChildren(
      ...parts.map((part) => {
        if (typeof part === "string") return document.createTextNode(part);
        const code = document.createElement("code");
        code.textContent = part.code;
        return code;
      }),
    );
    notice.classList.toggle("problem", isProblem);
  }

  const HOW_TO = [
    "Paste an API token in the field above (it is kept in this browser), or put ",
    { code: '{"Authorization": "Bearer <token>"}' },
    " in the Headers tab. The first start of ",
    { code: "make run" },
    " prints an admin token; ",
    { code: "loom token create --user NAME" },
    " makes more.",
  ];

  function explainMissingToken() {
    if (authorization()) say(false);
    else say(false, "Loom needs a token. ", ...HOW_TO);
  }

  async function explainUnauthorized(response) {
    let reason = "";
    try {
      const body = await response.json();
      reason = body.errors[0].message;
    } catch (error) {
      reason = response.statusText;
    }
    say(true, "Loom answered 401 (" + reason + "). ", ...HOW_TO);
  }

  // The HTTP transport of every operation and of the schema fetch.
  async function loomFetch(input, init) {
    const headers = new Headers((init && init.headers) || {});
    const value = authorization();
    if (value && !headers.has("authorization")) headers.set("authorization", value);
    const response = await window.fetch(input, Object.assign({}, init, { headers: headers }));
    if (response.status === 401) explainUnauthorized(response.clone());
    else if (response.ok && notice.classList.contains("problem")) say(false);
    return response;
  }

  function parsed(query) {
    try {
      return GraphiQL.GraphQL.parse(query);
    } catch (error) {
      return null; // the server says what is wrong with it
    }
  }

  function headersAuthorizationOf(text) {
    if (!text || !text.trim()) return null;
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      if (/^\s*authorization\s*:/i.test(text)) {
        const example = { code: '{"Authorization": "Bearer <token>"}' };
        say(true, "The Headers tab takes JSON: ", example);
      }
      return headersAuthorization; // being edited: keep what was there
    }
    if (!parsed || typeof parsed !== "object") return null;
    const key = Object.keys(parsed).find((name) => name.toLowerCase() === "authorization");
    return key && typeof parsed[key] === "string" ? parsed[key] : null;
  }

  function onEditHeaders(text) {
    window.clearTimeout(headersTimer);
    headersTimer = window.setTimeout(() => {
      headersAuthorization = headersAuthorizationOf(text);
      render();
    }, HEADERS_SETTLE_MS);
  }

  // A new fetcher makes GraphiQL fetch the schema again: one per Authorization.
  function render() {
    const value = authorization();
    if (value === renderedAuthorization) return;
    renderedAuthorization = value;
    explainMissingToken();
    const graphiqlFetcher = GraphiQL.createFetcher({
      url: endpoint,
      subscriptionUrl: websocketEndpoint,
      fetch: loomFetch,
      wsConnectionParams: value ? { Authorization: value } : {},
    });
    // GraphiQL picks the websocket for a subscription from the document it parsed last,
    // which lags behind the editor: run right after an edit, a subscription went over
    // HTTP. The document of the request itself decides here.
    const fetcher = (params, options) => {
      const documentAST = parsed(params.query);
      const current = documentAST ? Object.assign({}, options, { documentAST }) : options;
      return graphiqlFetcher(params, current);
    };
    root.render(
      React.createElement(GraphiQL, {
        key: tokenChanges,
        fetcher: fetcher,
        plugins: [explorer],
        defaultQuery: "{\n  viewer {\n    name\n    role\n  }\n}\n",
        defaultEditorToolsVisibility: true,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: true,
        inputValueDeprecation: true,
        onEditHeaders: onEditHeaders,
      }),
    );
  }

  document.getElementById("loom-token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveToken(tokenFrom(tokenInput.value));
    tokenInput.value = token;
    tokenChanges += 1;
    render();
  });
  document.getElementById("loom-forget").addEventListener("click", () => {
    saveToken("");
    tokenInput.value = "";
    tokenChanges += 1;
    render();
  });

  tokenInput.value = token;
  // The Headers tab as GraphiQL kept it from the last visit (`shouldPersistHeaders`).
  try {
    const kept = window.localStorage.getItem("graphiql:headers");
    headersAuthorization = headersAuthorizationOf(kept);
  } catch (error) {
    headersAuthorization = null;
  }
  render();
})();
