/** What a warm spare writes to its journal once it waits on its fifo (plumb status reads it). */
export const SPARE_READY = 'plumb: spare ready';

/**
 * The spare's warm-up of plumber's request path (issue 14): the throwaway API `pr` of RUNNER_R's
 * warm-up serves a 404, a JSON 200 with a query string and a POST with a JSON body, called as
 * httpuv's server calls an app (its AppWrapper's onHeaders and onBodyData, then rookCall, the R
 * side of every request) but in process: no socket, so nothing the isolation table refuses (an
 * API's user reaches only its live workers' ports) and nothing any other process could reach.
 * Without it the first request after the handover (the health gate's) waited ~50-75 ms more and
 * the first 200 ~100-150 ms more, R loading and compiling that path then. Only the last step,
 * handing the answer to httpuv's C++ side, stays cold. Synchronous: no server, no loop, no later
 * callback; the body goes through an anonymous file R deletes as it opens it, closed here.
 * Separate so that bench/first-request.ts can measure the runner without it.
 */
export const REQUEST_WARM_UP_R = `    app <- httpuv:::AppWrapper$new(pr)
    serve <- function(method, path, query = "", body = NULL) {
      headers <- c(host = "127.0.0.1", accept = "*/*", if (!is.null(body)) c("content-type" = "application/json", "content-length" = as.character(length(body))))
      req <- list2env(c(
        list(REQUEST_METHOD = method, SCRIPT_NAME = "", PATH_INFO = path, QUERY_STRING = query, rook.version = "1.1-0", rook.url_scheme = "http",
          SERVER_NAME = "127.0.0.1", SERVER_PORT = Sys.getenv("PLUMB_PORT"), REMOTE_ADDR = "127.0.0.1", REMOTE_PORT = "1", HEADERS = headers),
        stats::setNames(as.list(headers), paste0("HTTP_", toupper(gsub("-", "_", names(headers), fixed = TRUE))))
      ), parent = emptyenv())
      on.exit(if (!is.null(req$.bodyData)) close(req$.bodyData))
      app$onHeaders(req)
      if (!is.null(body)) app$onBodyData(req, body)
      httpuv:::rookCall(pr$call, req, req$.bodyData, if (is.null(req$.bodyData)) -1 else seek(req$.bodyData))
    }
    try(serve("GET", "/plumb-warm-up"), silent = TRUE)
    try(serve("GET", "/", "?x=1"), silent = TRUE)
    try(serve("POST", "/", body = charToRaw('{"x":1}')), silent = TRUE)
`;

/**
 * /usr/lib/plumb/run-api.R, what every worker unit runs. It starts an API as plumber itself
 * would, so plumber's own examples work unchanged:
 * - plumber attached, so files using `%>%`, `as_attachment()` and friends without library() work;
 * - `plumb(dir =)`, which takes entrypoint.R (that must return a router) before plumber.R;
 * - the release directory as working directory, for data files read by relative path;
 * - the docs left at plumber's default: plumber 1.3 turns them on when a router is made
 *   (`setDocs(TRUE)`, interactive or not) and `pr_run()` keeps what the API set when `docs` is
 *   not given, so an API's own `pr_set_docs()` is honoured. nginx strips the path prefix, and
 *   the Swagger page finds openapi.json relative to its own address, so /NAME/__docs__/ works.
 * Only loopback: nginx is the way in.
 */
export const RUNNER_R = `# Written by plumb-agent; edits here are overwritten. Runs one worker of a plumber API
# (unit plumber-NAME@PORT): PLUMB_RELEASE_DIR and PLUMB_PORT come from the unit.
spare <- Sys.getenv("PLUMB_SPARE")
if (nzchar(spare)) {
  # A warm spare (ops/spare.ts): plumber and the live release's packages loaded (not attached: the
  # API's own library() calls decide its search path), then it waits on its fifo until a deploy
  # hands it a release: "NAME HEX" lines, one per variable to set (PLUMB_RELEASE_DIR: the spare
  # started with the release's --env and secrets in its env file, as a cold worker has them).
  library(plumber)
  for (pkg in strsplit(Sys.getenv("PLUMB_SPARE_PACKAGES"), " ", fixed = TRUE)[[1]]) {
    if (nzchar(pkg)) try(loadNamespace(pkg), silent = TRUE)
  }
  Sys.unsetenv(c("PLUMB_SPARE", "PLUMB_SPARE_PACKAGES"))
  # What every API's start runs, whatever its code (plumber's parser, the OpenAPI spec, the docs'
  # router, httpuv's server), once on a throwaway API: R loads those functions from plumber's
  # lazy-load database and compiles them on first use, ~0.15 s that the handover would wait for.
  # On this spare's own port (no worker may take it), quiet, stopped once it listens; then the same
  # API serves requests in process (REQUEST_WARM_UP_R). A failure here costs only that time, and
  # says nothing (R would print its warnings at the handover).
  suppressWarnings(try(local({
    dir <- tempfile("plumb-warm-")
    dir.create(dir)
    on.exit(unlink(dir, recursive = TRUE))
    writeLines(c(
      "#* @get /", 'function(x = "0") list(x = as.numeric(x), at = "a", ok = TRUE)',
      "#* @post /", "function(x = 0) list(x = x)"
    ), file.path(dir, "plumber.R"))
    pr <- plumber::plumb(dir = dir)
    try(local({
      later::later(httpuv::interrupt, 0)
      # Should that interrupt be spent before the server runs, this one ends the warm-up; cancelled
      # on the way out, so none is left to interrupt the API's own server.
      cancel <- later::later(httpuv::interrupt, 10)
      on.exit(cancel())
      plumber::pr_run(pr, host = "127.0.0.1", port = as.integer(Sys.getenv("PLUMB_PORT")), quiet = TRUE)
    }), silent = TRUE)
${REQUEST_WARM_UP_R}  }), silent = TRUE))
  # httpuv hands the stopped server's clean-up to the event loop: run here, not in the API's (its
  # listening socket is closed by then; the rest of the clean-up may finish on httpuv's own thread).
  try(later::run_now(), silent = TRUE)
  message("${SPARE_READY}")
  con <- fifo(spare, open = "r", blocking = TRUE)
  handover <- readLines(con)
  close(con)
  unhex <- function(h) if (!nzchar(h)) "" else rawToChar(as.raw(strtoi(substring(h, seq(1, nchar(h), 2), seq(2, nchar(h), 2)), 16L)))
  for (line in handover) {
    kv <- strsplit(line, " ", fixed = TRUE)[[1]]
    if (length(kv) >= 1 && nzchar(kv[1])) do.call(Sys.setenv, stats::setNames(list(unhex(if (length(kv) > 1) kv[2] else "")), kv[1]))
  }
}
release <- Sys.getenv("PLUMB_RELEASE_DIR")
port <- Sys.getenv("PLUMB_PORT")
if (!nzchar(release) || !grepl("^[0-9]+$", port)) {
  message("plumb: PLUMB_RELEASE_DIR and PLUMB_PORT must be set (got \\"", release, "\\" and \\"", port, "\\")")
  quit(save = "no", status = 2)
}
if (!dir.exists(release)) {
  message("plumb: release directory ", release, " does not exist")
  quit(save = "no", status = 2)
}
setwd(release)
library(plumber)
pr <- plumber::plumb(dir = release)
message("plumb: serving ", release, " on 127.0.0.1:", port)
plumber::pr_run(pr, host = "127.0.0.1", port = as.integer(port))
`;
