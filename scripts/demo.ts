// npm run demo: a local Tahoe grid, a node directory with an alias, a live mount, a few files written and
// listed through it; then it waits (Ctrl-C stops everything). `npm run demo -- --once` tears down at once.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startGrid } from '../grid/local-grid.js';
import { CLI, isMountpoint } from '../grid/mount.js';

const run = promisify(execFile);
const once = process.argv.includes('--once');
const base = process.env.BLACKMATCH_DEMO_DIR ?? '/tmp/blackmatch-demo';
const nodeDir = join(base, 'node');
const mnt = join(base, 'mnt');

async function main(): Promise<void> {
  if (await isMountpoint(mnt)) await run('fusermount', ['-u', mnt]);
  await rm(base, { recursive: true, force: true });
  await mkdir(mnt, { recursive: true });

  console.log('Starting a local Tahoe-LAFS grid (introducer, 3 storage nodes, 1 gateway)...');
  const grid = await startGrid();
  const stop = async () => {
    if (await isMountpoint(mnt)) await run('fusermount', ['-u', mnt]).catch(() => run('fusermount', ['-uz', mnt]));
    await grid.stop();
  };
  try {
    await grid.createNodeDir(nodeDir, 'tahoe');
    console.log(`Gateway: ${grid.gatewayUrl}   node directory: ${nodeDir} (alias "tahoe")`);

    const mountCmd = [process.execPath, CLI, '--node-directory', nodeDir, '--alias', 'tahoe', mnt];
    console.log(`\n$ blackmatch --node-directory ${nodeDir} --alias tahoe ${mnt}`);
    await run(mountCmd[0]!, mountCmd.slice(1));

    await writeFile(join(mnt, 'hello.txt'), 'Hello from blackmatch: this file lives on a Tahoe-LAFS grid.\n');
    await mkdir(join(mnt, 'photos'));
    await writeFile(join(mnt, 'photos', 'not-really-a-photo.bin'), Buffer.alloc(300_000, 7));
    console.log(`$ ls -l ${mnt}`);
    console.log((await run('ls', ['-l', mnt])).stdout.trimEnd());
    console.log(`$ cat ${mnt}/hello.txt`);
    console.log((await readFile(join(mnt, 'hello.txt'), 'utf8')).trimEnd());
    const size = (await stat(join(mnt, 'photos', 'not-really-a-photo.bin'))).size;
    console.log(`(photos/ holds ${(await readdir(join(mnt, 'photos'))).length} file of ${size} bytes)`);

    if (once) {
      await stop();
      console.log('\nDemo done; everything stopped.');
      return;
    }
    console.log(`
Try next:
  ls -la ${mnt}        cp -r /etc/ssh ${mnt}/        rsync -a SOMEDIR ${mnt}/backup/
  curl '${grid.gatewayUrl}uri/'"$(sed -n 's/^tahoe: //p' ${nodeDir}/private/aliases)"'?t=json'   (the same directory, seen by the web API)
  blackmatch --help
Logs: ${nodeDir}/tfuse.tahoe.*.log

To stop: press Ctrl-C here (unmounts ${mnt} and stops the grid).
`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    console.log('\nStopping...');
    await stop();
  } catch (e) {
    await stop();
    throw e;
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
