// End to end: the BUILT CLI (build/bundle/cli.js, what users run) in a real terminal (tmux) on a temp folder, with the real
// engine process. The list shows the files, Enter opens the detail, Tab reaches Tags and Blocks, a file
// copied into the folder appears with its "new" badge, q exits with code 0 and the screen is restored.
import assert from 'node:assert/strict';
import {execFileSync, spawnSync} from 'node:child_process';
import {copyFile, readFile, stat, utimes} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {sample, tempFolder} from './helpers/fixtures.js';
import {builtCli, ensureBuilt} from './helpers/pty-screen.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = builtCli(root);
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const session = `lorascope-e2e-${process.pid}`;
let work: {dir: string; remove: () => Promise<void>};
let folder: string;
let spare: string;

function tmux(...args: string[]): string {
	return execFileSync('tmux', args, {encoding: 'utf8'});
}

function screen(): string {
	return tmux('capture-pane', '-p', '-t', session);
}

async function waitForScreen(check: (text: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const text = screen();
		if (check(text)) {
			return text;
		}

		if (Date.now() > deadline) {
			throw new Error(`timed out waiting for ${what}; screen:\n${text}`);
		}

		// Polling interval, not a wait for an outcome.
		await new Promise(resolve => {
			setTimeout(resolve, 50);
		});
	}
}

function keys(...names: string[]): void {
	tmux('send-keys', '-t', session, ...names);
}

before(async () => {
	if (!hasTmux) {
		return;
	}

	await ensureBuilt(root);
	work = await tempFolder('lorascope-e2e-');
	folder = path.join(work.dir, 'loras');
	await sample(folder, 'aria.safetensors', 'sd15-lora', {rank: 4, alpha: 2});
	await sample(folder, 'mira-000001.safetensors', 'sd15-epoch', {epoch: 1, epochs: 2});
	spare = await sample(work.dir, 'mira-000002.safetensors', 'sd15-epoch', {epoch: 2, epochs: 2});
	const old = Date.now() / 1000 - 3600;
	await utimes(path.join(folder, 'aria.safetensors'), old, old);
	await utimes(path.join(folder, 'mira-000001.safetensors'), old - 60, old - 60);
});

after(async () => {
	if (!hasTmux) {
		return;
	}

	spawnSync('tmux', ['kill-session', '-t', session]);
	await work?.remove();
});

test('the built CLI in tmux: list, detail tabs, watch badge, resize and write, q restores the screen', {skip: hasTmux ? false : 'tmux is not installed'}, async () => {
	const exitFile = path.join(work.dir, 'exit-code');
	// A marker on the normal screen first: after q it must be back, and the dashboard gone.
	const command = [
		`cd ${JSON.stringify(root)}`,
		'printf "BEFORE-DASHBOARD\\n"',
		// CI=true as CI runners set it: Ink would then hold every frame until exit, so the CLI must drop it.
		`CI=true LANG=C.UTF-8 XDG_CACHE_HOME=${JSON.stringify(path.join(work.dir, 'cache'))} node ${JSON.stringify(cli)} ${JSON.stringify(folder)} --device cpu`,
		`echo $? > ${JSON.stringify(exitFile)}`,
		'sleep 120',
	].join('; ');
	tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40', command);

	let text = await waitForScreen(t => t.includes('aria.safetensors') && t.includes('mira-000001') && t.includes('4/2') && !t.includes('loading'), 'the list');
	assert.ok(!text.includes('BEFORE-DASHBOARD'), 'the dashboard is on the alternate screen');
	assert.match(text, /lorascope .* 2 files/);
	const lines = text.split('\n');
	assert.ok(lines.filter(l => l.trim() !== '').length <= 39, 'at most rows-1 lines');

	keys('Enter');
	text = await waitForScreen(t => t.includes('Rank / alpha') && t.includes('esc back'), 'the detail');
	assert.match(text, /Rank \/ alpha\s+4 \/ 2/);

	keys('Tab', 'Tab');
	text = await waitForScreen(t => /\d+ tags in \d+ dirs?/.test(t), 'the Tags tab');

	keys('Tab', 'Tab');
	text = await waitForScreen(t => t.includes('per block') && /UNet ‖ΔW‖ \d/.test(t), 'the Blocks tab with statistics from the engine', 60_000);
	assert.match(text, /IN01 +█/);
	assert.match(text, /engine cpu/);

	// A new epoch appears while the app runs, with its badge.
	keys('Escape');
	await waitForScreen(t => t.includes('↵ open'), 'back on the list');
	await copyFile(spare, path.join(folder, 'mira-000002.safetensors'));
	text = await waitForScreen(t => /new mira-000002/.test(t), 'the copied file with its "new" badge');
	assert.match(text, /3 files/);

	// Resize (issue 4): the real engine decomposes, w writes next to the source, the list shows it.
	keys('/', 'aria', 'Enter');
	await waitForScreen(t => t.includes('1 of 3 files'), 'the filtered list');
	keys('r');
	text = await waitForScreen(t => t.includes('decomposed on'), 'the Resize view', 60_000);
	assert.match(text, /Param +rank 2/);
	keys('w');
	await waitForScreen(t => t.includes('Wrote ') && t.includes('aria_rank2.safetensors'), 'the written file', 60_000);
	assert.ok((await stat(path.join(folder, 'aria_rank2.safetensors'))).size > 0);
	keys('Escape');
	await waitForScreen(t => t.includes('↵ open'), 'back on the list');
	keys('Escape');
	await waitForScreen(t => t.includes('4 files') && t.includes('aria_rank2'), 'the resized file in the list');

	// The minimum size works, and below it the too-small screen.
	tmux('resize-window', '-t', session, '-x', '80', '-y', '24');
	text = await waitForScreen(t => t.includes('mira-000002') && t.split('\n').every(l => l.length <= 80) && t.includes('1 Overview'), 'the 80x24 layout');
	tmux('resize-window', '-t', session, '-x', '70', '-y', '20');
	await waitForScreen(t => t.includes('needs ≥ 80×24, have 70×20'), 'the too-small screen');
	tmux('resize-window', '-t', session, '-x', '120', '-y', '40');
	await waitForScreen(t => t.includes('aria.safetensors'), 'the list again');

	keys('q');
	text = await waitForScreen(t => t.includes('BEFORE-DASHBOARD'), 'the normal screen after q', 15_000);
	const exitCode = await waitForExitCode(exitFile);
	assert.equal(exitCode, '0');
	assert.ok(!text.includes('aria.safetensors'), `the dashboard is gone from the screen:\n${text}`);
});

async function waitForExitCode(file: string): Promise<string> {
	const deadline = Date.now() + 10_000;
	for (;;) {
		const code = await readFile(file, 'utf8').then(t => t.trim(), () => '');
		if (code !== '' || Date.now() > deadline) {
			return code;
		}

		await new Promise(resolve => {
			setTimeout(resolve, 50);
		});
	}
}
