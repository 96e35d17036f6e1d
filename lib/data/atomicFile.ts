/**
 * Atomic file output: every file the library writes goes to a temporary name in the target's folder
 * (`.<name>.<pid>.<random>.tmp`, created exclusively), is flushed to disk, and only then renamed over
 * the target. A failure at any point (bad input found late, disk full, cancellation, a crash) leaves the
 * target as it was (absent or the previous version) and removes the temporary file.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Largest chunk handed to one `write` call (the platform limit is just under 2 GiB). */
const MAX_WRITE = 1 << 30;
/** Text is buffered up to this many UTF-16 units before it is encoded and written. */
const TEXT_CHUNK = 1 << 20;

function temporaryName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** sha256 (hex) of a file's bytes, read in 4 MiB chunks. @throws the file system's error */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Writes `parts` one after another to `file`, atomically. @throws the file system's error */
export async function writeFileAtomic(file: string, parts: readonly Uint8Array[]): Promise<void> {
  const out = new AtomicFile(file);
  await out.open();
  try {
    for (const bytes of parts) await out.writeBytes(bytes);
    await out.finish();
    await out.commit();
  } catch (error) {
    await out.discard();
    throw error;
  }
}

/** Writes `value` as pretty-printed JSON (2-space indent, trailing newline), atomically. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, [Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8')]);
}

/**
 * A file written in pieces to a temporary name, renamed into place by {@link commit}; the sha256 of
 * everything written is computed on the way. Usage: open → write/writeBytes… → finish → commit, and
 * discard on any failure.
 */
export class AtomicFile {
  readonly temp: string;
  private handle: fs.promises.FileHandle | undefined;
  private position = 0;
  private text: string[] = [];
  private buffered = 0;
  private readonly hash = createHash('sha256');

  constructor(readonly file: string) {
    this.temp = temporaryName(file);
  }

  /** Creates the temporary file (exclusively). */
  async open(): Promise<void> {
    this.handle = await fs.promises.open(this.temp, 'wx');
  }

  /** Appends UTF-8 text (buffered). */
  async write(text: string): Promise<void> {
    this.text.push(text);
    this.buffered += text.length;
    if (this.buffered >= TEXT_CHUNK) await this.flushText();
  }

  /** Appends bytes (after any buffered text). */
  async writeBytes(bytes: Uint8Array): Promise<void> {
    await this.flushText();
    this.hash.update(bytes);
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await this.handle!.write(bytes, done, Math.min(MAX_WRITE, bytes.length - done), this.position + done);
      done += bytesWritten;
    }
    this.position += bytes.length;
  }

  private async flushText(): Promise<void> {
    if (this.text.length === 0) return;
    const bytes = Buffer.from(this.text.join(''), 'utf8');
    this.text = [];
    this.buffered = 0;
    await this.writeBytes(bytes);
  }

  /** Flushes, syncs and closes the temporary file; returns the sha256 (hex) of everything written. */
  async finish(): Promise<string> {
    await this.flushText();
    await this.handle!.sync();
    const handle = this.handle!;
    this.handle = undefined;
    await handle.close();
    return this.hash.digest('hex');
  }

  /** Renames the finished temporary file over the target. */
  async commit(): Promise<void> {
    await fs.promises.rename(this.temp, this.file);
  }

  /** Closes (when open) and removes the temporary file; never throws. */
  async discard(): Promise<void> {
    if (this.handle) await this.handle.close().catch(() => undefined);
    this.handle = undefined;
    await fs.promises.rm(this.temp, { force: true }).catch(() => undefined);
  }
}
