// End to end without tmux: the BUILT CLI (build/bundle/cli.js) in a real pseudo-terminal (node-pty), its output
// parsed by a headless xterm.js, with the real engine process. j/k move the selection, Enter opens the
// detail, Tab and number keys reach the Blocks tab whose norms match a float64 reference, a copied file
// appears with its "new" badge, a small terminal shows the too-small screen, the app runs on the
// alternate screen and q exits with code 0 back on the normal one; a title-setting OSC and a cursor move
// in a file's metadata never reach the terminal.
import assert from 'node:assert/strict';
import {copyFile, utimes} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {setTimeout as delay} from 'node:timers/promises';
import {fileURLToPath} from 'node:url';
import {assertClose, referenceNorms, sample, tempFolder} from './helpers/fixtures.js';
import {ensureBuilt, loadPtyLibraries, PtyScreen} from './helpers/pty-screen.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const libraries = loadPtyLibraries();
const skip = 'error' in libraries ? `node-pty does not load on this platform: ${libraries.error}` : false;

/** An OSC 0 title change and CSI cursor moves (5 up, 20 right) inside the visible text "safe", "name", "moved". */
const hostileTitle = 'safe\u001B]0;PWNED\u0007name\u001B[5A\u001B[20Cmoved';
const inertTitle = 'safenamemoved';

/** IN01 of SD1.x in kohya names: the first down block's first attention and resnet. */
const isIn01 = (name: string): boolean => /^lora_unet_down_blocks_0_(attentions|resnets)_0_/.test(name);

let work: {dir: string; remove: () => Promise<void>} | undefined;
let folder: string;
let spare: string;
let aria: string;
let screen: PtyScreen | undefined;

before(async () => {
	if (skip) {
		return;
	}

	work = await tempFolder('lorascope-e2e-pty-');
	folder = path.join(work.dir, 'loras');
	aria = await sample(folder, 'aria.safetensors', 'sd15-lora', {rank: 4, alpha: 2});
	const hostile = await sample(folder, 'hostile.safetensors', 'sd15-epoch', {epoch: 1, epochs: 2, outputName: hostileTitle});
	const mira = await sample(folder, 'mira-000001.safetensors', 'sd15-epoch', {epoch: 1, epochs: 2});
	spare = await sample(work.dir, 'mira-000002.safetensors', 'sd15-epoch', {epoch: 2, epochs: 2});
	// Newest first in the list: aria, hostile, mira-000001.
	const old = Date.now() / 1000 - 3600;
	await utimes(aria, old, old);
	await utimes(hostile, old - 60, old - 60);
	await utimes(mira, old - 120, old - 120);
});

after(async () => {
	// Runs on failure too: the CLI (and with it the engine it started) must not outlive the test.
	await screen?.kill();
	await work?.remove();
});

/** The row of the screen that contains `text` (the detail pane is the right half of the split view). */
function lineWith(text: string, needle: string | RegExp): string {
	return text.split('\n').find(l => (typeof needle === 'string' ? l.includes(needle) : needle.test(l))) ?? '';
}

test('the built CLI in a pty: list, j/k, detail tabs, engine block norms, watch badge, too-small screen, inert metadata, q restores the screen', {skip, timeout: 120_000}, async () => {
	if ('error' in libraries) {
		return;
	}

	const [cli, reference] = await Promise.all([ensureBuilt(root), referenceNorms(aria, isIn01)]);
	// CI=true as CI runners set it: Ink would then hold every frame until exit, so the CLI must drop it.
	const env: Record<string, string | undefined> = {...process.env, CI: 'true', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', XDG_CACHE_HOME: path.join(work!.dir, 'cache')};
	// Colours on (the selection is drawn in inverse video) whatever the runner's environment says.
	for (const name of ['NO_COLOR', 'FORCE_COLOR', 'LC_CTYPE', 'NODE_TEST_CONTEXT']) {
		delete env[name];
	}

	const term = new PtyScreen(libraries, process.execPath, [cli, folder, '--device', 'cpu'], {cols: 120, rows: 40, cwd: root, env});
	screen = term;
	assert.equal(term.bufferType(), 'normal');

	// 1. The list, on the alternate screen, at most rows-1 lines so the terminal never scrolls.
	let text = await term.waitFor(t => t.includes('aria.safetensors') && t.includes('mira-000001') && t.includes('4/2') && t.includes('3 files') && !t.includes('loading'), 'the list');
	assert.equal(term.bufferType(), 'alternate', 'the dashboard runs on the alternate screen');
	assert.match(text, /^lorascope .* 3 files/);
	assert.equal(text.split('\n')[39], '', 'the last row stays empty');
	await assertSelected(term, 'aria.safetensors', 'the newest file is selected first');

	// 2. j selects the hostile file: its title is shown inert in the Overview beside the list.
	term.keys('j');
	text = await term.waitFor(t => t.includes(' 2/3 ') && lineWith(t, /│Title\s/).includes(inertTitle), 'the hostile file selected, its overview beside the list');
	await assertSelected(term, 'hostile.safet', 'j moved the selection bar');
	term.keys('\r');
	await term.waitFor(t => t.includes('esc back') && lineWith(t, /│Output name\s/).includes(inertTitle), 'the detail of the hostile file');
	term.keys('2');
	// The help bar is the frame's last row: once it is there the frame is complete (a poll can land
	// while a frame is still being written; the layout checks below need all of it).
	text = await term.waitFor(t => /\d+ keys/.test(t) && lineWith(t, 'modelspec.title').includes(inertTitle) && t.includes('esc back'), 'its Metadata tab');
	assertInertScreen(text, term);

	// k back to aria; Enter, 1 to Overview, Tab to Metadata, 5 to Blocks: real per-block norms from the engine process.
	term.keys('\u001B');
	await term.waitFor(t => t.includes('↵ open'), 'back on the list');
	term.keys('k');
	// The side pane keeps the tab chosen in the detail (Metadata).
	await term.waitFor(t => t.includes(' 1/3 ') && lineWith(t, 'modelspec.title').includes('aria_lsc'), 'aria selected again');
	await assertSelected(term, 'aria.safetensors', 'k moved the selection bar back');
	term.keys('\r');
	await term.waitFor(t => t.includes('esc back') && t.includes('n new key'), 'the detail of aria, on the Metadata tab still');
	term.keys('1');
	await term.waitFor(t => /Rank \/ alpha\s+4 \/ 2/.test(t), 'its Overview tab');
	term.keys('\t');
	await term.waitFor(t => /\d+ keys {2}\(\/ to search\)/.test(t) && lineWith(t, 'modelspec.title').includes('aria_lsc'), 'the Metadata tab by Tab');
	term.keys('5');
	text = await term.waitFor(t => t.includes('per block') && /UNet ‖ΔW‖ \d/.test(t) && /IN01 +[█▏▎▍▌▋▊▉]+ +\S+/.test(t), 'the Blocks tab with statistics from the engine', 60_000);
	assert.match(text, /engine cpu/);
	const totals = /UNet ‖ΔW‖ (\S+)\s+TE ‖ΔW‖ (\S+)/.exec(lineWith(text, 'UNet ‖ΔW‖'));
	assertClose(totals?.[1], reference.unet, 'UNet total');
	assertClose(totals?.[2], reference.te, 'TE total');
	assert.ok(reference.denseChecked >= 6, 'the IN01 references were also checked by forming ΔW');
	let in01 = 0;
	for (const m of reference.modules.values()) {
		in01 += isIn01(m.name) ? m.squaredNorm : 0;
	}

	assertClose(/IN01 +[█▏▎▍▌▋▊▉]+ +(\S+)/.exec(lineWith(text, /│IN01 /))?.[1], Math.sqrt(in01), 'IN01 block norm');

	// 3. A new epoch copied in while the app runs appears with its badge.
	term.keys('\u001B');
	await term.waitFor(t => t.includes('↵ open'), 'back on the list');
	await copyFile(spare, path.join(folder, 'mira-000002.safetensors'));
	text = await term.waitFor(t => /new mira-000002/.test(t) && t.includes('4 files'), 'the copied file with its "new" badge');

	// 4. Below the minimum size the too-small screen; back to full size, the list again.
	term.resize(70, 20);
	text = await term.waitFor(t => t.includes('needs ≥ 80×24, have 70×20'), 'the too-small screen');
	assert.ok(!text.includes('aria.safetensors'), 'no broken layout under the message');
	term.resize(120, 40);
	await term.waitFor(t => t.includes('aria.safetensors') && t.includes('mira-000002') && t.includes('4 files'), 'the list again');

	// 5. q: exit code 0 and the normal screen back.
	term.keys('q');
	const exit = await Promise.race([term.exit, delay(15_000, undefined, {ref: false})]);
	assert.ok(exit, `the CLI did not exit after q; screen:\n${await term.text()}`);
	assert.equal(exit.exitCode, 0);
	await term.flush();
	assert.equal(term.bufferType(), 'normal', 'the alternate screen was left');
	assert.ok(!(await term.text()).includes('aria.safetensors'), 'the dashboard is gone from the screen');

	// 6. Over the whole session the hostile title never reached the terminal.
	assert.deepEqual(term.titles.filter(title => title.includes('PWNED')), [], 'the terminal title was never set from the file');
	assert.ok(!term.raw.includes('\u001B]0;PWNED'), 'the OSC sequence never reached the pty');
	await assertEmulatorSeesTitles(libraries.xterm);
});

/** The list's selection bar (inverse video) is on the row of `name`, and on no other row. */
async function assertSelected(term: PtyScreen, name: string, message: string): Promise<void> {
	const runs = await term.inverseText();
	const rows = runs.filter(run => /safet/.test(run));
	assert.equal(rows.length, 1, `${message}: one selected row; inverse text: ${JSON.stringify(runs)}`);
	assert.ok(rows[0]!.includes(name), `${message}: inverse text: ${JSON.stringify(runs)}`);
}

/** The screen of the hostile file's Metadata tab: the layout is intact (no cursor move took effect). */
function assertInertScreen(text: string, term: PtyScreen): void {
	const lines = text.split('\n');
	assert.match(lines[0] ?? '', /^lorascope /, 'the title row is in place');
	// The frame's top border on row 1, its bottom border 3 rows above the end (status, help, the empty
	// last row), and every row between them starts and ends with the pane borders.
	assert.match(lines[1] ?? '', /^╭─+╮╭─+╮$/, `the top border moved:\n${text}`);
	assert.match(lines.at(-4) ?? '', /^╰─+╯╰─+╯$/, `the bottom border moved:\n${text}`);
	for (const row of lines.slice(2, -4)) {
		assert.match(row, /^│.*││.*│$/, `a body row lost its borders:\n${text}`);
	}

	const titleRow = lineWith(text, 'modelspec.title');
	assert.match(titleRow, new RegExp(`│modelspec\\.title +${inertTitle} +│$`), titleRow);
	assert.ok(!text.includes('PWNED'), `the OSC payload is not shown:\n${text}`);
	assert.deepEqual(term.titles, [], 'no title was set');
}

/** The title check is not vacuous: this emulator does report a title set by OSC 0. */
async function assertEmulatorSeesTitles(xterm: typeof import('@xterm/headless')): Promise<void> {
	const probe = new xterm.Terminal({cols: 20, rows: 2, allowProposedApi: true});
	const titles: string[] = [];
	probe.onTitleChange(title => titles.push(title));
	await new Promise<void>(resolve => {
		probe.write(hostileTitle, resolve);
	});
	probe.dispose();
	assert.deepEqual(titles, ['PWNED']);
}
