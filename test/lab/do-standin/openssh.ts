import { createHash } from 'node:crypto';

const keyTypes = new Set([
  'ssh-rsa',
  'ssh-dss',
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

/**
 * The MD5 fingerprint DigitalOcean shows for an OpenSSH public key (`type base64 [comment]`), in
 * its `aa:bb:…` form; undefined when the text is not such a key. The blob must itself start with the
 * key type, which catches a pasted private key, a truncated line or a mismatched type.
 */
export function md5Fingerprint(publicKey: string): string | undefined {
  const line = publicKey.trim();
  if (/[\r\n]/.test(line)) return undefined;
  const [type, base64] = line.split(/\s+/);
  if (type === undefined || base64 === undefined || !keyTypes.has(type)) return undefined;
  if (base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, 'base64');
  if (blob.length < 4) return undefined;
  const typeLength = blob.readUInt32BE(0);
  if (blob.length < 4 + typeLength || blob.subarray(4, 4 + typeLength).toString('latin1') !== type) return undefined;
  return createHash('md5').update(blob).digest('hex').replace(/(..)(?!$)/g, '$1:');
}
