/**
 * R packages on a lab droplet (issue 10): how long a few common packages take to install from
 * Debian's binaries (what plumb does first) and built from source (what it does last). Prints a
 * table, asserts nothing. The sources are Debian's own source packages (the CRAN tarballs, as
 * Debian keeps them) served to R as a file:// CRAN-like repository, since the lab reaches only
 * Debian's archive, not CRAN.
 * Run: npm run build && tsc -p bench && node bench/dist/bench/r-packages.js   (root; 10-20 minutes)
 */
import { startLab } from '../test/lab/lab.js';
import { benchDroplet } from './bench-droplet.js';

/** Small to large; none comes with R or plumber. */
const PACKAGES = (process.env['R_BENCH_PACKAGES'] ?? 'praise base64enc digest matrixStats').split(/\s+/).filter(Boolean);

const lab = await startLab();
try {
  const droplet = await benchDroplet(lab, 'rbench');
  const sh = (script: string) => lab.droplet(droplet.id).exec(['sh', '-c', script], { timeoutMs: 3_600_000 });
  const timed = async (script: string) => {
    const started = Date.now();
    await sh(script);
    return (Date.now() - started) / 1000;
  };
  const apt = 'DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y --no-install-recommends';

  // Debian's binaries, one package at a time, downloads first so only the install is timed.
  const debs = PACKAGES.map((p) => `r-cran-${p.toLowerCase()}`);
  await sh(`${apt} --download-only install ${debs.join(' ')}`);
  const binary: Record<string, number> = {};
  for (const [i, p] of PACKAGES.entries()) binary[p] = await timed(`${apt} install ${debs[i]}`);

  // The compilers a source build needs (plumb installs r-base-dev once, the first time it must build).
  await sh(`${apt} --download-only install r-base-dev`);
  const compilers = await timed(`${apt} install r-base-dev`);

  // Source tarballs from Debian's source packages, as a file:// repository R reads.
  await sh(`echo 'deb-src http://deb.debian.org/debian trixie main' > /etc/apt/sources.list.d/plumb-bench-src.list && apt-get -o DPkg::Lock::Timeout=300 update -qq`);
  await sh('mkdir -p /srv/cran/src/contrib');
  const built: string[] = [];
  for (const [i, p] of PACKAGES.entries()) {
    // A mirror may lack a source package its index lists: that package is left out of the table.
    if (!(await sh(`cd /tmp && apt-get source --download-only -qq ${debs[i]}`).then(() => true, () => false))) continue;
    built.push(p);
    await sh(`cd /tmp && f=$(ls ${debs[i]}_*.orig.tar.* | head -1) && v=$(echo "$f" | sed -E 's/^[^_]+_([^+~]+)([+~][^.]*)?\\.orig\\.tar\\..*$/\\1/') && mkdir -p x && tar -xf "$f" -C x && d=$(ls x) && { [ "$d" = "${p}" ] || mv "x/$d" "x/${p}"; } && tar -czf /srv/cran/src/contrib/${p}_$v.tar.gz -C x ${p} && rm -rf x`);
  }
  await sh(`Rscript -e 'tools::write_PACKAGES("/srv/cran/src/contrib", type = "source")'`);
  const source: Record<string, number> = {};
  for (const p of built) {
    source[p] = await timed(`d=$(mktemp -d) && Rscript -e 'install.packages("${p}", lib = "'$d'", repos = "file:///srv/cran", Ncpus = 2, dependencies = FALSE)' && test -d $d/${p}`);
  }

  console.log(`\n### R packages: Debian binary vs source build (lab droplet s-2vcpu-4gb, R 4.5)\n`);
  console.log('| package | Debian binary (apt-get install) | from source (install.packages) | ratio |');
  console.log('|---|---|---|---|');
  for (const p of built) console.log(`| ${p} | ${binary[p]!.toFixed(1)} s | ${source[p]!.toFixed(1)} s | ${(source[p]! / binary[p]!).toFixed(1)}x |`);
  console.log(`| (once) the compilers, r-base-dev | ${compilers.toFixed(1)} s | | |`);
} finally {
  await lab.stop();
}
