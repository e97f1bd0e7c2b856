/**
 * Loaded with `node --import` into the conformance CLI, which has no option to send a header. It
 * adds `Authorization: $CONFORMANCE_AUTHORIZATION` to each request that carries none, as an MCP
 * client configured with a credential would: requests through undici's global dispatcher (global
 * fetch, the SDK client, undici's request) get it from an interceptor, and the raw requests the
 * header-validation scenarios build with `http.request` get it from a wrapper.
 */
import http from "node:http";
import { Agent, setGlobalDispatcher } from "undici";

const authorization = process.env.CONFORMANCE_AUTHORIZATION;
if (authorization === undefined || authorization === "") {
  throw new Error("authorization-hook: set CONFORMANCE_AUTHORIZATION, e.g. 'Bearer <key>'");
}

/** Dispatch options carry headers as an object, a flat [name, value, ...] array or an iterable. */
function withAuthorization(headers) {
  if (headers == null) return { authorization };
  if (Array.isArray(headers) && !Array.isArray(headers[0])) {
    const present = headers.some(
      (item, i) => i % 2 === 0 && String(item).toLowerCase() === "authorization",
    );
    return present ? headers : [...headers, "authorization", authorization];
  }
  if (typeof headers[Symbol.iterator] === "function") {
    const pairs = [...headers];
    const present = pairs.some(([name]) => name.toLowerCase() === "authorization");
    return present ? pairs : [...pairs, ["authorization", authorization]];
  }
  const present = Object.keys(headers).some((name) => name.toLowerCase() === "authorization");
  return present ? headers : { ...headers, authorization };
}

setGlobalDispatcher(
  new Agent().compose(
    (dispatch) => (options, handler) =>
      dispatch({ ...options, headers: withAuthorization(options.headers) }, handler),
  ),
);

const request = http.request;
http.request = (options, ...rest) =>
  typeof options === "object" && !(options instanceof URL)
    ? request({ ...options, headers: withAuthorization(options.headers) }, ...rest)
    : request(options, ...rest);
