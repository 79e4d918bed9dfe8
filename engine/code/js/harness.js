// Loom's Code node harness. The sandbox host evaluates it once per isolate, after SES's
// `lockdown()` has frozen every intrinsic. It defines `globalThis.__loom` with `run` and
// `settle`; user code never sees this start compartment, only the compartment below, whose
// global object is hardened too: nothing a script does can survive into the next call.
(() => {
  'use strict';

  // Math.random: xoshiro128** (public domain, Blackman and Vigna), seeded for each call with
  // 128 bits the parent draws from the operating system's CSPRNG. V8's own generator is one
  // per isolate, shared by every call the isolate serves: a call could read its state from
  // the values it draws and predict the next call's, or leave it where another call finds
  // it. This one starts afresh for each call and says nothing about any other.
  let s0 = 1;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  const next = () => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
  const seed = (words) => {
    [s0, s1, s2, s3] = words;
    if ((s0 | s1 | s2 | s3) === 0) s0 = 1; // the one state it never leaves
  };
  const mathProperties = Object.getOwnPropertyDescriptors(Math);
  mathProperties.random = {
    ...mathProperties.random,
    // 53 random bits, as V8's own: 27 from one draw, 26 from the next.
    value: {
      random() {
        return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
      },
    }.random,
  };
  const seededMath = Object.create(Object.getPrototypeOf(Math), mathProperties);

  // Date of the start compartment: hardened by lockdown, and unlike the tamed version a
  // compartment gets by default, `Date.now()` works (the real time, to the millisecond).
  const compartment = new Compartment({
    globals: { Date, Math: harden(seededMath) },
    __options__: true,
  });
  harden(compartment.globalThis);

  // Captured before any script runs (and frozen by lockdown anyway).
  const functionSource = Function.prototype.toString;
  const { apply } = Reflect;
  const PARAMETERS = '$input, $json, $, $node, $execution, $workflow, $now, $itemIndex, console';
  // The wrapper adds one line before the user's code: stack positions are shifted back.
  const SOURCE_URL = 'code.js';
  const LINE_OFFSET = 1;

  // Compiled scripts, most recently used last: a workflow run again skips compiling. Each is
  // hardened, so a cached function carries no state from one call to the next.
  const compiled = new Map();
  const COMPILED_MAX = 32;

  const compile = (code) => {
    let fn = compiled.get(code);
    if (fn !== undefined) {
      compiled.delete(code);
    } else {
      // Only code that awaits pays for an async function (and a second round trip).
      const kind = code.includes('await') ? 'async function' : 'function';
      const source = `${kind} (${PARAMETERS}) {\n${code}\n}`;
      fn = compartment.evaluate(`(${source})\n//# sourceURL=${SOURCE_URL}\n`);
      // Code that closes the wrapper early (`}); const kept = []; (function () {`) would
      // leave script-level bindings that a cached function keeps from call to call: only a
      // function whose own source is the whole wrapper is run.
      if (typeof fn !== 'function' || apply(functionSource, fn, []) !== source) {
        throw new SyntaxError(
          'the code closes the function Loom wraps it in: write the body of a function',
        );
      }
      harden(fn);
      if (compiled.size >= COMPILED_MAX) compiled.delete(compiled.keys().next().value);
    }
    compiled.set(code, fn);
    return fn;
  };

  const typeOf = (value) => {
    if (value === null || value === undefined) return String(value);
    if (Array.isArray(value)) return 'an array';
    const type = typeof value;
    return type === 'object' ? 'an object' : `a ${type}`;
  };

  // Text of any value, without letting a hostile toString or getter break the harness.
  const text = (value) => {
    if (typeof value === 'string') return value;
    if (typeof value === 'symbol') return value.toString();
    try {
      const result = String(value);
      return typeof result === 'string' ? result : typeOf(value);
    } catch (_) {
      return `[${typeOf(value)}]`;
    }
  };

  const utf8Length = (string) => {
    let bytes = 0;
    for (let index = 0; index < string.length; index += 1) {
      const code = string.charCodeAt(index);
      if (code < 0x80) bytes += 1;
      else if (code < 0x800) bytes += 2;
      else if (code >= 0xd800 && code < 0xdc00) {
        bytes += 4;
        index += 1;
      } else bytes += 3;
    }
    return bytes;
  };

  // JSON.stringify writes a lone surrogate as an escape (`\ud800`), a pair as itself.
  const LONE_SURROGATE = /(?<!\\)(?:\\\\)*\\u(d[89a-f][0-9a-f]{2})/;
  const holdsLoneSurrogate = (value) => {
    try {
      return LONE_SURROGATE.test(JSON.stringify(value) ?? '');
    } catch (_) {
      return false; // a toJSON that throws this time: the item is not the one named
    }
  };

  const formatted = (value) => {
    if (typeof value === 'string') return value;
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
      return text(value);
    }
    try {
      if (value instanceof Error) return `${text(value.name)}: ${text(value.message)}`;
      const json = JSON.stringify(value);
      return typeof json === 'string' ? json : text(value);
    } catch (_) {
      return text(value);
    }
  };

  // console.log and friends, captured line by line up to the limits; what is cut is counted.
  const makeConsole = (limits) => {
    const captured = { lines: [], bytes: 0, truncated: false };
    const write = (args) => {
      if (captured.truncated) return;
      // A lone surrogate is not text: it becomes U+FFFD, as toWellFormed() makes it.
      let line = args.map(formatted).join(' ').toWellFormed();
      const room = limits.consoleBytes - captured.bytes;
      if (captured.lines.length >= limits.consoleLines || room <= 0) {
        captured.truncated = true;
        return;
      }
      let size = utf8Length(line);
      if (size > room) {
        // Cut by characters until it fits: rare, and bounded by the line's length. A cut
        // through a surrogate pair leaves half of it, which becomes U+FFFD (fewer bytes).
        line = line.slice(0, room);
        while (utf8Length(line) > room) line = line.slice(0, Math.floor(line.length * 0.9));
        line = line.toWellFormed();
        size = utf8Length(line);
        captured.truncated = true;
      }
      captured.lines.push(line);
      captured.bytes += size;
    };
    const log = (...args) => write(args);
    const console = { log, info: log, warn: log, error: log, debug: log, trace: log };
    return { console, captured };
  };

  const wrap = (json) => ({ json });

  // `$("Name")` and `$node["Name"]` of the item at `index`: the items of an upstream node.
  // Loom passes in every upstream node the script can reach (`engine/code/references.py`):
  // a name it did not pass is not upstream.
  const makeNodes = (outputs, index) => {
    const lookup = (name) => {
      if (typeof name !== 'string') {
        throw new TypeError(`node names are strings, not ${typeOf(name)}`);
      }
      const items = outputs.get(name);
      if (items !== undefined) return view(items, index);
      throw new ReferenceError(
        `no node named '${name}' runs before this node (only upstream nodes can be referenced)`,
      );
    };
    const $node = new Proxy(
      {},
      {
        get: (_, name) => (typeof name === 'string' ? lookup(name) : undefined),
        set: () => false,
        defineProperty: () => false,
      },
    );
    return { $: lookup, $node };
  };

  // What `$input` and `$("Name")` show of a list of items, for the item at `index`.
  const view = (items, index) => ({
    all: () => items.map(wrap),
    first: () => (items.length ? wrap(items[0]) : undefined),
    last: () => (items.length ? wrap(items[items.length - 1]) : undefined),
    get item() {
      return index < items.length ? wrap(items[index]) : undefined;
    },
    get json() {
      return items.length ? items[0] : undefined;
    },
  });

  // Upstream outputs, two lines per node (its name, its items, as JSON), each node's items
  // parsed when the script first reads them: most scripts never look, and a script that
  // builds names at run time is given every upstream node but may read one.
  const lazyOutputs = (text) => {
    let spans;
    const parsed = new Map();
    const index = () => {
      spans = new Map();
      for (let at = 0; at < text.length; ) {
        const nameEnd = text.indexOf('\n', at);
        let end = text.indexOf('\n', nameEnd + 1);
        if (end === -1) end = text.length;
        spans.set(JSON.parse(text.slice(at, nameEnd)), [nameEnd + 1, end]);
        at = end + 1;
      }
    };
    return {
      get: (name) => {
        if (parsed.has(name)) return parsed.get(name);
        if (spans === undefined) index();
        const span = spans.get(name);
        if (span === undefined) return undefined;
        const items = JSON.parse(text.slice(span[0], span[1]));
        parsed.set(name, items);
        return items;
      },
    };
  };

  const invalid = (message) => {
    const error = new TypeError(message);
    error.invalidResult = true;
    return error;
  };

  const asItem = (value, where) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw invalid(`${where} is ${typeOf(value)}; an item is an object such as {json: {...}}`);
    }
    if (!('json' in value)) return value;
    const json = value.json;
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw invalid(`${where} has a 'json' that is ${typeOf(json)}; it must be an object`);
    }
    return json;
  };

  const asItems = (value, mode, itemIndex) => {
    const where = mode === 'each_item' ? `the result for item ${itemIndex}` : 'the result';
    if (value === undefined || value === null) {
      throw invalid(
        mode === 'each_item'
          ? `the code returned nothing for item ${itemIndex}: return an item, or [] to drop it`
          : 'the code returned nothing: return an array of items (or [] for none)',
      );
    }
    if (Array.isArray(value)) {
      const items = [];
      const length = value.length;
      for (let index = 0; index < length; index += 1) {
        items.push(asItem(value[index], `item ${index} of ${where}`));
      }
      return items;
    }
    return [asItem(value, where)];
  };

  const describe = (error, phase, code) => {
    const failure = { type: 'CODE_ERROR', phase, line: null, column: null };
    let isError = false;
    try {
      isError = error instanceof Error;
    } catch (_) {
      isError = false;
    }
    if (!isError) {
      failure.name = '';
      failure.message = `the code threw ${typeOf(error)}, not an Error: ${text(error)}`;
      failure.message = failure.message.toWellFormed();
      return failure;
    }
    let name = '';
    let message = '';
    let stack = '';
    try {
      name = text(error.name);
      message = text(error.message);
      stack = typeof error.stack === 'string' ? error.stack : '';
    } catch (_) {
      message = message || 'the code threw an Error whose fields cannot be read';
    }
    failure.name = name.toWellFormed();
    failure.message = (name ? `${name}: ${message}` : message).toWellFormed();
    try {
      if (error.invalidResult === true) failure.phase = 'result';
    } catch (_) {
      // a getter that throws: the phase stays as it was
    }
    const lines = code.split('\n').length;
    const position = /code\.js:(\d+):(\d+)/.exec(stack);
    if (position) {
      const line = Number(position[1]) - LINE_OFFSET;
      if (line >= 1 && line <= lines) {
        failure.line = line;
        failure.column = Number(position[2]);
      }
    }
    // SES refuses some source text before running it (`import(`, direct `eval(`, HTML
    // comments), naming the line of its wrapper: the user's line is one less.
    const refused = / at code\.js:(\d+)\. \((SES_[A-Z_]+)\)$/.exec(failure.message);
    if (refused) {
      const line = Number(refused[1]) - LINE_OFFSET;
      failure.message = `${failure.message.slice(0, refused.index)} (${refused[2]})`;
      if (line >= 1 && line <= lines) failure.line = line;
    }
    return failure;
  };

  let outcome = null;

  const resultError = (message, captured) => {
    outcome = JSON.stringify({
      ok: false,
      error: { type: 'CODE_ERROR', phase: 'result', name: 'TypeError', message, line: null, column: null },
      console: captured,
    });
  };

  // The items as JSON in pieces of about PIECE_CHARS, one piece (an array) per line: Loom
  // decodes them one at a time, so that a large result never holds its event loop for long.
  const PIECE_CHARS = 256 * 1024;

  const finish = (items, captured, limits) => {
    const pieces = [];
    let total = 0;
    let count = 64;
    for (let start = 0; start < items.length; ) {
      const end = Math.min(items.length, start + count);
      let json;
      try {
        json = JSON.stringify(items.slice(start, end));
      } catch (error) {
        resultError(`the result cannot be converted to JSON: ${text(error && error.message)}`, captured);
        return;
      }
      total += json.length;
      if (total > limits.resultChars) {
        outcome = JSON.stringify({
          ok: false,
          error: { type: 'CODE_MEMORY_LIMIT', limit: 'result', phase: 'result', message: '' },
          console: captured,
        });
        return;
      }
      const lone = json.includes('\\ud') ? LONE_SURROGATE.exec(json) : null;
      if (lone !== null) {
        // Which item: found again one by one (a toJSON may answer differently: the last).
        let at = start;
        while (at < end - 1 && !holdsLoneSurrogate(items[at])) at += 1;
        const unit = lone[1];
        resultError(
          `item ${at} of the result holds text with a lone UTF-16 surrogate (\\u${unit}), ` +
            'which is not valid Unicode (text.toWellFormed() replaces each with U+FFFD)',
          captured,
        );
        return;
      }
      pieces.push(json);
      start = end;
      if (json.length < PIECE_CHARS / 2) count *= 2;
      else if (json.length > PIECE_CHARS * 2) count = Math.max(1, count >> 1);
    }
    const head = `{"ok":true,"console":${JSON.stringify(captured)}}`;
    outcome = pieces.length ? `${head}\n${pieces.join('\n')}` : head;
  };

  const fail = (error, phase, code, captured) => {
    outcome = JSON.stringify({ ok: false, error: describe(error, phase, code), console: captured });
  };

  const isThenable = (value) =>
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof value.then === 'function';

  // One call. `request` is the header (code, mode, facts, limits, seed), the items and the
  // upstream outputs, each on a line of its own (the outputs on two lines per node). Returns
  // the outcome, or null while a promise the code returned is pending: V8 runs the microtasks
  // that settle it right after this call returns, and `settle` hands the outcome over then.
  const run = (request) => {
    outcome = null;
    const first = request.indexOf('\n');
    const second = request.indexOf('\n', first + 1);
    const header = JSON.parse(request.slice(0, first));
    const { code, mode, facts, limits } = header;
    seed(header.seed);
    const { console, captured } = makeConsole(limits);
    let fn;
    try {
      fn = compile(code);
    } catch (error) {
      fail(error, 'compile', code, captured);
      return settle();
    }
    const items = JSON.parse(request.slice(first + 1, second));
    const outputs = lazyOutputs(request.slice(second + 1));
    const call = (json, index) => {
      const { $, $node } = makeNodes(outputs, index);
      return fn(view(items, index), json, $, $node, facts.execution, facts.workflow, facts.now, index, console);
    };
    const collect = (values) => {
      if (mode !== 'each_item') return asItems(values[0], mode, 0);
      const out = [];
      for (let index = 0; index < values.length; index += 1) {
        const produced = asItems(values[index], mode, index);
        for (let at = 0; at < produced.length; at += 1) out.push(produced[at]);
      }
      return out;
    };
    let values;
    let waiting = false;
    try {
      if (mode === 'each_item') {
        values = [];
        for (let index = 0; index < items.length; index += 1) {
          const value = call(items[index], index);
          waiting = waiting || isThenable(value);
          values.push(value);
        }
      } else {
        const value = call(items.length ? items[0] : {}, 0);
        waiting = isThenable(value);
        values = [value];
      }
      if (!waiting) {
        finish(collect(values), captured, limits);
        return settle();
      }
    } catch (error) {
      fail(error, 'run', code, captured);
      return settle();
    }
    Promise.all(values)
      .then(collect)
      .then(
        (out) => finish(out, captured, limits),
        (error) => fail(error, 'run', code, captured),
      );
    return null;
  };

  const settle = () => {
    const result = outcome;
    outcome = null;
    return result;
  };

  // Called with the request as `this`: mini-racer then needs no arguments array, one round
  // trip to V8's thread less.
  const runRequest = function () {
    return run(this);
  };

  Object.defineProperty(globalThis, '__loom', { value: harden({ run: runRequest, settle }) });
})();
