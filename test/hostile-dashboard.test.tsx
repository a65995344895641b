/** @jsxRuntime automatic */
// The dashboard opened on the hostile corpus: every readable-or-not file is listed, files that
// fail show their one-line reason as an error, and no frame carries an escape sequence, control
// character or bidi override from a file (only Ink's own SGR styling, which colours are forced
// on to produce). Then the real CLI in tmux: the terminal's title and clipboard stay untouched.
import './helpers/force-color.js';
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {mkdtemp, rm, stat} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {Root} from '../source/app.js';
import {LoraFileError, readHeader} from '../source/lora/safetensors.js';
import {type CorpusEntry, pickleMarkerPath, rawControlPattern, writeHostileCorpus} from './fixtures/hostile-corpus.js';
import {inProcessEngine} from './helpers/fixtures.js';
import {keys, plain, renderInTerminal, type Rendered} from './helpers/render.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;
let entries: CorpusEntry[];
const reasons = new Map<string, string | null>();

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-dashboard-corpus-'));
	entries = await writeHostileCorpus(dir, {huge: false});
	for (const entry of entries) {
		try {
			await readHeader(entry.file);
			reasons.set(entry.file, null);
		} catch (error) {
			reasons.set(entry.file, error instanceof LoraFileError ? error.reason : String(error));
		}
	}
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

/** Only Ink's SGR styling may be in a frame; nothing that came from a file. */
function assertInert(frame: string, where: string): void {
	const unstyled = frame.replaceAll(/\u001B\[[0-9;]*m/g, '');
	const match = rawControlPattern.exec(unstyled);
	assert.equal(match, null, `${where}: raw U+${match?.[0].codePointAt(0)?.toString(16).padStart(4, '0')} in the frame:\n${JSON.stringify(unstyled.slice(Math.max(0, (match?.index ?? 0) - 80), (match?.index ?? 0) + 80))}`);
	assert.ok(!unstyled.includes('\r'), `${where}: CR in the frame`);
}

const isPlainName = (name: string): boolean => /^[\w.-]+$/.test(name);

/** Waits until the frame has stopped changing and nothing is loading. */
async function settle(app: Rendered, timeoutMs = 30_000): Promise<string> {
	const deadline = Date.now() + timeoutMs;
	let last = app.lastFrame();
	let stableSince = Date.now();
	for (;;) {
		await new Promise(resolve => {
			setTimeout(resolve, 25);
		});
		const frame = app.lastFrame();
		if (frame !== last) {
			last = frame;
			stableSince = Date.now();
		} else if (Date.now() - stableSince >= 100 && !/Loading…|Reading header…|Scanning…|computing|loading \d/.test(plain(frame))) {
			return frame;
		}

		if (Date.now() > deadline) {
			return frame;
		}
	}
}

test('the dashboard lists the corpus, shows errors as errors, and no frame carries a raw control sequence', async t => {
	const engine = inProcessEngine();
	const app = renderInTerminal(<Root folder={dir} env={{unicode: true, color: true}} engine={() => engine} watch={false} onCopy={() => undefined} />, {columns: 120, rows: 40});
	try {
		const loaded = await app.waitFor(f => /[1-9]\d* files/.test(plain(f)) && !/loading|Scanning|Reading/.test(plain(f)), 120_000);
		assertInert(loaded, 'file list');
		const count = Number(/(\d+) files/.exec(plain(loaded))![1]);
		const mustList = entries.filter(e => e.expect.listed === 'yes');
		const mayList = entries.filter(e => e.expect.listed === 'maybe');
		assert.ok(count >= mustList.length && count <= mustList.length + mayList.length, `${count} files listed; ${mustList.length} must be, ${mayList.length} may be`);

		const walkStart = performance.now();
		// Walk the whole list; the line above the help bar names the selected file (and its error).
		const statusLines: string[] = [];
		const position = (frame: string): number => Number(new RegExp(`│ (\\d+)/${count} `).exec(plain(frame))?.[1] ?? 0);
		for (let index = 1; index <= count; index++) {
			let frame = app.lastFrame();
			for (let attempt = 0; attempt < 5 && position(frame) < index; attempt++) {
				app.press('j');
				// A key can arrive while the list re-sorts on a finished header read; retry then.
				frame = await app.waitFor(f => position(f) >= index, 3000).catch(() => app.lastFrame());
			}

			assert.equal(position(frame), index, `moved to row ${index}`);
			frame = await app.waitFor(f => position(f) === index && !/Reading header…|Loading…/.test(plain(f)));
			assertInert(frame, `row ${index}`);
			const lines = plain(frame).split('\n');
			statusLines.push(lines.at(-2)!.trim());
		}

		const walkSeconds = (performance.now() - walkStart) / 1000;
		for (const entry of mustList.filter(e => isPlainName(e.name))) {
			const reason = reasons.get(entry.file);
			const line = statusLines.find(l => l === entry.name || l.startsWith(`${entry.name}:`) || l.startsWith(`${entry.name}  `));
			assert.ok(line, `${entry.name} is listed (status lines: ${statusLines.length})`);
			if (reason) {
				const expected = `${entry.name}: ${reason}`;
				const shown = line.split('  (')[0]!;
				assert.ok(shown === expected || (shown.endsWith('…') && expected.startsWith(shown.slice(0, -1))), `${entry.name}: error shown as "${shown}", reader says "${reason}"`);
			} else {
				assert.ok(!line.startsWith(`${entry.name}:`), `${entry.name}: a good file shown with an error: ${line}`);
			}
		}

		const tabsStart = performance.now();
		// Every tab of every file with hostile text, found through the filter.
		for (const entry of entries.filter(e => e.expect.hostileText && isPlainName(e.name))) {
			app.press('/', ...entry.name.replace('.safetensors', ''), keys.enter);
			await app.waitFor(f => plain(f).includes(` 1/1 `) || plain(f).includes('1 of '), 10_000);
			// Blocks (5) shows module names: only the file with hostile tensor names needs it.
			for (const tab of entry.name.startsWith('inject-tensor-names') ? ['1', '2', '3', '4', '5'] : ['1', '2', '3', '4']) {
				app.press(tab);
				assertInert(await settle(app), `${entry.name} tab ${tab}`);
			}

			app.press(keys.escape, '1');
			await settle(app);
			app.press('/', keys.ctrlU, keys.enter);
			await settle(app);
		}

		t.diagnostic(`${count} of ${entries.length} corpus files listed (walk ${walkSeconds.toFixed(1)} s); every row and every tab of the hostile-text files rendered inert (${((performance.now() - tabsStart) / 1000).toFixed(1)} s)`);
	} finally {
		app.unmount();
		await engine.close();
	}

	await assert.rejects(stat(pickleMarkerPath(dir)), {code: 'ENOENT'});
});

const tmux = spawnSync('tmux', ['-V'], {encoding: 'utf8'}).status === 0;
test('the real dashboard in tmux: title and clipboard untouched, screen free of planted sequences', {skip: tmux ? false : 'needs tmux'}, async t => {
	const socket = `lorascope-h8-${process.pid}`;
	const run = (...args: string[]): string => spawnSync('tmux', ['-L', socket, ...args], {encoding: 'utf8'}).stdout;
	// CI=true as CI runners set it: the CLI must still render live frames (Ink would hold them).
	const command = `cd ${JSON.stringify(repoRoot)} && CI=true exec ${JSON.stringify(process.execPath)} --import tsx source/cli.tsx ${JSON.stringify(dir)} --no-watch --device cpu`;
	// With set-clipboard on, an OSC 52 write reaching tmux becomes a paste buffer. It is set in the
	// same tmux command, long before the app (which takes a second to start) prints anything.
	spawnSync('tmux', ['-L', socket, '-f', '/dev/null', 'new-session', '-d', '-x', '120', '-y', '40', '-s', 'h8', command, ';', 'set-option', '-g', 'set-clipboard', 'on']);
	try {
		const initialTitle = run('display-message', '-p', '-t', 'h8', '#{pane_title}').trim();
		const capture = (): string => run('capture-pane', '-p', '-t', 'h8');
		const deadline = Date.now() + 120_000;
		while (!/\d+ files(?!.*loading)/.test(capture()) || /loading|Scanning|Reading/.test(capture())) {
			assert.ok(Date.now() < deadline, `dashboard did not load:\n${capture()}`);
			await new Promise(resolve => {
				setTimeout(resolve, 200);
			});
		}

		const count = Number(/(\d+) files/.exec(capture())![1]);
		for (let index = 1; index < count; index++) {
			run('send-keys', '-t', 'h8', 'j');
			if (index % 10 === 0 || index === count - 1) {
				await new Promise(resolve => {
					setTimeout(resolve, 150);
				});
				for (const tab of ['2', '3', '1']) {
					run('send-keys', '-t', 'h8', tab);
					await new Promise(resolve => {
						setTimeout(resolve, 100);
					});
				}
			}
		}

		const screen = capture();
		t.diagnostic(screen.split('\n').slice(0, 3).join(' | '));
		assert.match(screen, /files/, 'the dashboard is still up');
		const title = run('display-message', '-p', '-t', 'h8', '#{pane_title}').trim();
		assert.equal(title, initialTitle, 'the pane title was not changed by a file');
		assert.doesNotMatch(title, /PWNED|C1-TITLE/);
		assert.equal(run('list-buffers').trim(), '', 'no clipboard (OSC 52) write reached the terminal');
		assert.doesNotMatch(run('capture-pane', '-p', '-e', '-t', 'h8'), /\u001B\]8;/, 'no hyperlink from a file');
	} finally {
		run('send-keys', '-t', 'h8', 'q');
		await new Promise(resolve => {
			setTimeout(resolve, 300);
		});
		run('kill-server');
	}
});
