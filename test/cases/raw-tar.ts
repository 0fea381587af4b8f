/**
 * Raw ustar archives, for what tar.c will not make (entries escaping the root, links, devices):
 * how tests hand the agent hostile bundles.
 */
export type RawType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo' | 'pax' | 'global' | 'volume' | 'gnuLongName' | 'gnuLongLink';
export interface RawEntry {
  path: string;
  type?: RawType;
  body?: Buffer | string;
  linkpath?: string;
  mode?: number;
  uid?: number;
}
const TYPEFLAG: Record<RawType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6', pax: 'x', global: 'g', volume: 'V', gnuLongName: 'L', gnuLongLink: 'K' };

export function rawHeader(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, at: number, len: number) => h.write(s, at, len, 'utf8');
  const octal = (n: number, at: number, len: number) => put(`${n.toString(8).padStart(len - 1, '0')}\0`, at, len);
  const type = e.type ?? 'file';
  put(e.path, 0, 100);
  octal(e.mode ?? (type === 'dir' ? 0o755 : 0o644), 100, 8);
  octal(e.uid ?? 0, 108, 8);
  octal(e.uid ?? 0, 116, 8);
  octal(size, 124, 12);
  octal(Math.floor(Date.now() / 1000), 136, 12);
  h.fill(' ', 148, 156);
  put(TYPEFLAG[type], 156, 1);
  put(e.linkpath ?? '', 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  octal(0, 329, 8);
  octal(0, 337, 8);
  const sum = h.reduce((a, b) => a + b, 0);
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return h;
}

/** A tar archive of exactly these entries, end marker included. */
export function rawTar(entries: RawEntry[]): Buffer {
  const blocks = entries.flatMap((e) => {
    const body = Buffer.from(e.body ?? '');
    return [rawHeader(e, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512)];
  });
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}


/** A pax header body: `LEN key=value\n` records, LEN counting itself. */
export function pax(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      const n = Buffer.byteLength(rest);
      let len = n + String(n).length;
      if (String(len).length !== String(n).length) len = n + String(len).length;
      return `${len}${rest}`;
    })
    .join('');
}
