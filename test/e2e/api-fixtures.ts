import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Small plumber APIs written by the tests themselves (no checked-in blobs). */
export async function apiDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-api-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

/** Two endpoints, and one that writes to the log. `version` shows which release answered. */
export const sumApi = (version: string, extra = '') => ({
  'plumber.R': `
#* Add two numbers
#* @get /add
function(a, b) {
  as.numeric(a) + as.numeric(b)
}

#* Which code is live
#* @get /version
function() {
  "${version}"
}

#* Write a line to the log
#* @get /shout
function(msg = "") {
  message("shout: ", msg)
  "ok"
}

#* Which process answered
#* @get /pid
function() {
  Sys.getpid()
}
${extra}`,
});

/** R code that fails as the API starts. */
export const crashingApi = { 'plumber.R': '#* @get /x\nfunction() 1\nstop("this API cannot start: a data file is missing")\n' };

/** An API that takes far longer to start than the health timeout allows. */
export const sleepyApi = { 'plumber.R': 'Sys.sleep(600)\n#* @get /x\nfunction() 1\n' };
