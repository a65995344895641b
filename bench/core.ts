// Core figures: header scan throughput over 1,000 small LoRA files, and `inspect -w` throughput
// (MB/s of tensor data from page cache) and peak memory on an SDXL rank-32 fp16 LoRA (~230 MB).
// Inputs are generated into bench-data/ (git-ignored) on first use. When the peer-benchmark
// inputs of ../shared/bench-inputs can be made (python3 with numpy), inspect -w is also timed on
// exactly those files and compared with lora-inspector's published seconds.
import {execFile, spawnSync} from 'node:child_process';
import {copyFile, link, mkdir, readdir, rm, stat, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {promisify} from 'node:util';
import type {loadEntry} from '../source/lora/entry.js';
import {defaultHeaderThreads, type HeaderPool} from '../source/lora/header-pool.js';
import {readHeader} from '../source/lora/safetensors.js';
import {generateSample, writeSample, writeSdxlBenchLora, type SampleKind, type SampleOptions} from '../source/lora/samples.js';
import {writeSafetensorsAtomic} from '../source/lora/writer.js';
// The pty harness of the end-to-end tests: the dashboard timed as a user runs it.
import {ensureBuilt, loadPtyLibraries, PtyScreen} from '../test/helpers/pty-screen.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const benchData = path.join(repoRoot, 'bench-data');
const sharedInputs = path.resolve(repoRoot, '../shared/bench-inputs');

async function exists(file: string): Promise<boolean> {
	try {
		await stat(file);
		return true;
	} catch {
		return false;
	}
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

// ---------------------------------------------------------------- header scan

const scanKinds: Array<[SampleKind, SampleOptions]> = [
	['sd15-lora', {rank: 1}],
	['sd15-lokr', {}],
	['flux-peft', {rank: 1}],
	['sd15-loha', {rank: 1}],
	['sd15-locon', {rank: 1, convRank: 1}],
];

/**
 * `count` files: 40 distinct generated LoRAs and hard links to them (copies where links fail), so
 * the set costs little disk while every path is opened and parsed on its own: a folder of 40 runs
 * (up to 40 tensor tables, see tensorTables) of 25 epochs each. 'full': whole
 * SD1.5 LoRA/LoCon/LoHa/LoKr and Flux PEFT files (800–1,750 tensors, ~130 KB headers with full
 * ss_* metadata); 'small': the first 16 tensors of such files with the same metadata (~12 KB).
 */
async function scanSet(count: number, variant: 'full' | 'small'): Promise<string> {
	const folder = path.join(benchData, `scan-${variant}-v2-${count}`);
	const marker = path.join(folder, '.complete');
	if (await exists(marker)) {
		return folder;
	}

	await rm(folder, {recursive: true, force: true});
	await mkdir(folder, {recursive: true});
	const distinct: string[] = [];
	for (let seed = 1; seed <= 8; seed++) {
		for (const [kind, options] of scanKinds) {
			const file = path.join(folder, `${kind}-s${seed}.safetensors`);
			// Runs of one kind differ in rank (1–4) and in training the text encoder or not, as
			// the runs in a trainer's output folder do: each has its own tensor table.
			const rank = 1 + ((seed - 1) % 4);
			const sampleOptions: SampleOptions = {
				...options,
				...(options.rank === undefined ? {} : {rank}),
				...(options.convRank === undefined ? {} : {convRank: rank}),
				textEncoder: seed <= 4,
				seed,
				outputName: `${kind}_s${seed}`,
			};
			if (variant === 'full') {
				await writeSample(file, kind, sampleOptions);
			} else {
				const sample = await generateSample(kind, {...sampleOptions, hashes: false});
				await writeSafetensorsAtomic(file, sample.tensors.slice(0, 16), sample.metadata, {overwrite: true});
			}

			distinct.push(file);
		}
	}

	for (let i = distinct.length; i < count; i++) {
		const source = distinct[i % distinct.length]!;
		const target = path.join(folder, `copy-${String(i).padStart(4, '0')}-${path.basename(source)}`);
		try {
			await link(source, target);
		} catch {
			await copyFile(source, target);
		}
	}

	await writeFile(marker, `${count}\n`);
	return folder;
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
	let next = 0;
	await Promise.all(Array.from({length: concurrency}, async () => {
		while (next < items.length) {
			const item = items[next++]!;
			await work(item);
		}
	}));
}

/**
 * The reader as the CLI runs it: tsc's build (`npm run bench` builds first), not the sources
 * through tsx, whose transform adds a helper call to every function it defines.
 */
async function builtReader(): Promise<{loadEntry: typeof loadEntry; readHeader: typeof readHeader; HeaderPool: typeof HeaderPool}> {
	const built = (file: string): string => pathToFileURL(path.join(repoRoot, 'build', 'lora', file)).href;
	const [entry, safetensors, headerPool] = await Promise.all([
		import(built('entry.js')) as Promise<typeof import('../source/lora/entry.js')>,
		import(built('safetensors.js')) as Promise<typeof import('../source/lora/safetensors.js')>,
		import(built('header-pool.js')) as Promise<typeof import('../source/lora/header-pool.js')>,
	]);
	return {loadEntry: entry.loadEntry, readHeader: safetensors.readHeader, HeaderPool: headerPool.HeaderPool};
}

async function benchScan(count: number, variant: 'full' | 'small'): Promise<void> {
	const {loadEntry, readHeader, HeaderPool} = await builtReader();
	const folder = await scanSet(count, variant);
	const files = (await readdir(folder)).filter(name => name.endsWith('.safetensors')).map(name => path.join(folder, name));
	let headerBytes = 0;
	let tensors = 0;
	const tables = new Set<string>();
	const originals = files.filter(file => !path.basename(file).startsWith('copy-'));
	for (const file of originals) {
		const header = await readHeader(file);
		headerBytes += header.headerLength;
		tensors += header.tensors.length;
		tables.add(JSON.stringify(header.tensors));
	}

	// Warm the page cache and the JIT once.
	await pool(files, 8, async file => {
		await loadEntry(file);
	});
	const rows: Array<[string, number]> = [];
	// Twice: with tensor tables shared between files whose headers differ only in metadata (the
	// default: epochs of one run; structure-cache.ts), and with sharing off, as if every header in
	// the folder were unlike every other.
	for (const sharing of [true, false]) {
		process.env['LORASCOPE_STRUCTURE_CACHE'] = sharing ? '1' : '0';
		const suffix = sharing ? '' : ', nothing shared';
		for (const [label, concurrency, work] of [
			['readHeader, 1 at a time', 1, async (file: string) => {
				await readHeader(file);
			}],
			['loadEntry (header + model + metadata), 1 at a time', 1, async (file: string) => {
				await loadEntry(file);
			}],
			['loadEntry, 8 in flight', 8, async (file: string) => {
				await loadEntry(file);
			}],
		] as const) {
			const times: number[] = [];
			for (let run = 0; run < 3; run++) {
				const start = performance.now();
				await pool(files, concurrency, work);
				times.push((performance.now() - start) / 1000);
			}

			rows.push([label + suffix, files.length / median(times)]);
		}

		// Worker threads, as the dashboard reads folders past their first screenfuls: light
		// entries (summary and metadata; header-pool.ts). Worker start-up is outside the timing;
		// workers take the sharing setting from the environment they start with.
		for (const threads of [...new Set([defaultHeaderThreads(), 2])]) {
			const pool = HeaderPool.start(threads);
			try {
				await pool.load(files[0]!);
				const times: number[] = [];
				for (let run = 0; run < 3; run++) {
					const start = performance.now();
					await Promise.all(files.map(async file => pool.load(file)));
					times.push((performance.now() - start) / 1000);
				}

				rows.push([`header pool, ${threads} worker thread${threads === 1 ? '' : 's'}${threads === defaultHeaderThreads() ? ' (dashboard default)' : ''}${suffix}`, files.length / median(times)]);
			} finally {
				await pool.close();
			}
		}
	}

	delete process.env['LORASCOPE_STRUCTURE_CACHE'];
	const sample = originals.length;
	console.log(`header scan, ${files.length} ${variant === 'full' ? 'full-size' : 'small'} files (avg ${Math.round(tensors / sample)} tensors, ${(headerBytes / sample / 1024).toFixed(0)} KB header; ${tables.size} tensor tables; page cache; median of 3; target ≥ 2,000 files/s):`);
	for (const [label, rate] of rows) {
		console.log(`  ${label.padEnd(66)} ${Math.round(rate).toLocaleString('en-US').padStart(7)} files/s`);
	}
}

// ---------------------------------------------------------------- inspect -w in a child

type ChildResult = {seconds: number[]; cpuSeconds: number[]; maxRssMiB: number; tensorBytes: number; backend: string; statsThreads: number};

/**
 * Runs in the child: `inspect -w --json` N times in one process, output discarded. It runs tsc's
 * build (what the CLI bundles; `npm run bench` builds first), not the sources through tsx, whose
 * transform adds a helper call to every function it defines.
 */
async function childInspect(file: string, repeats: number): Promise<void> {
	const buildUrl = (module: string): string => pathToFileURL(path.join(repoRoot, 'build', module)).href;
	const {runInspect} = await import(buildUrl('commands/inspect.js')) as typeof import('../source/commands/inspect.js');
	const header = await readHeader(file);
	const seconds: number[] = [];
	const cpuSeconds: number[] = [];
	let backend = 'js';
	for (let i = 0; i < repeats; i++) {
		const cpu = process.cpuUsage();
		const start = performance.now();
		const code = await runInspect(['-w', '--json', file], {stdout: () => undefined, stderr: text => process.stderr.write(text), cwd: process.cwd(), columns: 100});
		seconds.push((performance.now() - start) / 1000);
		const used = process.cpuUsage(cpu);
		cpuSeconds.push((used.user + used.system) / 1e6);
		if (code !== 0) {
			throw new Error(`inspect exited ${code}`);
		}
	}

	try {
		const engine = await import(buildUrl('engine/kernels/index.js')) as typeof import('../source/engine/kernels/index.js');
		backend = (await engine.getEngineKernels('cpu')).backend;
		await engine.disposeEngineKernels();
	} catch {
		backend = 'js';
	}

	const {defaultStatsHelpers, threadedStatsMinBytes} = await import(buildUrl('engine/stats-threads.js')) as typeof import('../source/engine/stats-threads.js');
	const threaded = backend === 'onnxruntime' && header.sizeBytes - header.dataOffset >= threadedStatsMinBytes && process.env['LORASCOPE_STATS_THREADS'] !== '0';
	const result: ChildResult = {seconds, cpuSeconds, maxRssMiB: process.resourceUsage().maxRSS / 1024, tensorBytes: header.sizeBytes - header.dataOffset, backend, statsThreads: threaded ? 1 + defaultStatsHelpers() : 1};
	process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function inspectInChild(file: string, repeats: number): Promise<ChildResult> {
	const run = promisify(execFile);
	const {stdout} = await run(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child-inspect', file, String(repeats)], {cwd: repoRoot, maxBuffer: 1024 * 1024});
	return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildResult;
}

function describe(result: ChildResult): string {
	const warm = result.seconds.length > 1 ? result.seconds.slice(1) : result.seconds;
	const seconds = median(warm);
	const mb = result.tensorBytes / 1e6;
	const cpu = median(result.cpuSeconds.length > 1 ? result.cpuSeconds.slice(1) : result.cpuSeconds);
	return `${seconds.toFixed(3)} s warm median (CPU ${cpu.toFixed(2)} s; first run ${result.seconds[0]!.toFixed(3)} s incl. kernel start-up) · ${(mb / seconds).toFixed(0)} MB/s of ${mb.toFixed(0)} MB tensor data · peak RSS ${result.maxRssMiB.toFixed(0)} MiB · kernels ${result.backend} · ${result.statsThreads} stats thread${result.statsThreads === 1 ? '' : 's'}`;
}

async function benchInspect(quick: boolean): Promise<void> {
	const file = path.join(benchData, 'lorascope_sdxl_r32_fp16.safetensors');
	if (!(await exists(file))) {
		await mkdir(benchData, {recursive: true});
		const start = performance.now();
		await writeSdxlBenchLora(file);
		console.log(`(generated ${path.relative(repoRoot, file)} in ${((performance.now() - start) / 1000).toFixed(1)} s)`);
	}

	const result = await inspectInChild(file, quick ? 2 : 4);
	console.log('inspect -w on the generated SDXL r32 fp16 LoRA (target ≥ 500 MB/s, peak < 400 MB):');
	console.log(`  ${describe(result)}`);
}

// ---------------------------------------------------------------- peer inputs

const peerInputs: Array<{file: string; args: string[]; liSeconds: number; liRssMiB: number; label: string}> = [
	{file: 'sd15_r32.safetensors', args: ['lora', 'sd15', '-r', '32', '-a', '16', '--seed', '1'], liSeconds: 2.37, liRssMiB: 955, label: 'SD1.5 r32 (264 layers)'},
	{file: 'sdxl_r32.safetensors', args: ['lora', 'sdxl', '-r', '32', '-a', '16', '--seed', '2'], liSeconds: 12.65, liRssMiB: 4600, label: 'SDXL r32 (986 layers)'},
	{file: 'sd15_locon_r32c8.safetensors', args: ['lora', 'sd15', '-r', '32', '-a', '16', '--conv-dim', '8', '--conv-alpha', '4', '--seed', '3'], liSeconds: 3.09, liRssMiB: 1224, label: 'SD1.5 LoCon r32/c8 (350)'},
];

function numpyAvailable(): boolean {
	const probe = spawnSync('python3', ['-c', 'import numpy'], {stdio: 'ignore'});
	return probe.status === 0;
}

async function benchPeerInputs(quick: boolean): Promise<void> {
	const script = path.join(sharedInputs, 'make_lora.py');
	const canMake = (await exists(script)) && !quick && numpyAvailable();
	const rows: string[] = [];
	for (const input of peerInputs) {
		const file = path.join(benchData, input.file);
		if (!(await exists(file))) {
			if (!canMake) {
				continue;
			}

			const made = spawnSync('python3', [script, ...input.args, '-o', file], {stdio: ['ignore', 'ignore', 'inherit']});
			if (made.status !== 0) {
				console.log(`  (make_lora.py failed for ${input.file})`);
				continue;
			}
		}

		const result = await inspectInChild(file, quick ? 2 : 4);
		const seconds = median(result.seconds.length > 1 ? result.seconds.slice(1) : result.seconds);
		rows.push(`  ${input.label.padEnd(26)} ${seconds.toFixed(3)} s vs lora-inspector -w ${input.liSeconds} s → ${(input.liSeconds / seconds).toFixed(1)}× faster · RSS ${result.maxRssMiB.toFixed(0)} vs ${input.liRssMiB} MiB (first run ${result.seconds[0]!.toFixed(2)} s)`);
	}

	if (rows.length === 0) {
		console.log('peer inputs: not available (needs ../shared/bench-inputs and python3 with numpy; skipped in --quick)');
		return;
	}

	console.log('inspect -w on the peer-benchmark inputs (../shared/bench-inputs/make_lora.py), warm median:');
	for (const row of rows) {
		console.log(row);
	}
}

/**
 * The dashboard on a folder of full-size files, as a user starts it: the built CLI in a real
 * pseudo-terminal (node-pty, read through a headless xterm). Times process start → every row on
 * screen (the issue asks for under a second), → all headers read, and three j presses while the
 * headers are still loading → the selection drawn there.
 */
/**
 * `lorascope inspect --json` over the whole scan folder (headers, exact alphas, parsed training
 * metadata and JSON output; no -w), as a user runs it: the built CLI, whole process, median of 3.
 */
async function benchInspectFolder(folder: string, count: number): Promise<void> {
	const cli = await ensureBuilt(repoRoot);
	const parts: string[] = [];
	for (const sharing of [true, false]) {
		const env = {...process.env, ['LORASCOPE_STRUCTURE_CACHE']: sharing ? '1' : '0'};
		const times: number[] = [];
		for (let run = 0; run < 3; run++) {
			const started = performance.now();
			const result = spawnSync(process.execPath, [cli, 'inspect', '--json', folder], {env, stdio: ['ignore', 'ignore', 'inherit']});
			if (result.status !== 0) {
				console.log(`inspect of the scan folder: exit ${result.status}`);
				return;
			}

			times.push((performance.now() - started) / 1000);
		}

		parts.push(`${median(times).toFixed(2)} s${sharing ? '' : ' with nothing shared'}`);
	}

	console.log(`lorascope inspect --json on the ${count} full-size scan files (exact alphas, no -w; whole process, median of 3): ${parts.join(' · ')}`);
}

async function benchDashboard(folder: string, count: number, threads?: number): Promise<void> {
	const libraries = loadPtyLibraries();
	if ('error' in libraries) {
		console.log(`dashboard: skipped (node-pty does not load here: ${libraries.error})`);
		return;
	}

	const cli = await ensureBuilt(repoRoot);
	const env: Record<string, string | undefined> = {...process.env, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8'};
	delete env['NO_COLOR'];
	if (threads !== undefined) {
		env['LORASCOPE_SCAN_THREADS'] = String(threads);
	}

	const start = performance.now();
	const screen = new PtyScreen(libraries, process.execPath, [cli, folder, '--no-watch', '--device', 'cpu'], {cols: 120, rows: 40, cwd: repoRoot, env});
	try {
		// The first screenful of rows (sizes shown), then the whole listing counted in the title.
		await screen.waitFor(text => /\d+ files/.test(text) && /MiB/.test(text), 'the first rows', 60_000);
		const firstRows = (performance.now() - start) / 1000;
		await screen.waitFor(text => text.includes(`${count} files`), 'the list', 60_000);
		const listed = (performance.now() - start) / 1000;
		const keyStart = performance.now();
		screen.keys('jjj');
		const moved = await screen.waitFor(text => text.includes(` 4/${count}`), 'the moved selection', 60_000);
		const keys = performance.now() - keyStart;
		await screen.waitFor(text => text.includes('headers read in'), 'every header read', 120_000);
		const loaded = (performance.now() - start) / 1000;
		console.log(`dashboard on ${count} full-size files (built CLI in a pty, 120×40; ${env['LORASCOPE_SCAN_THREADS'] ?? defaultHeaderThreads()} header worker thread(s)):`);
		console.log(`  first rows on screen ${firstRows.toFixed(2)} s after start, all ${count} listed ${listed.toFixed(2)} s · all headers read after ${loaded.toFixed(2)} s (${(count / loaded).toFixed(0)} files/s incl. start-up) · 3 key presses drawn in ${keys.toFixed(0)} ms${moved.includes('loading') ? ' while headers were still loading' : ''}`);
		screen.keys('q');
	} finally {
		await screen.kill();
	}
}

/** `--part=scan,dashboard` runs only those parts of this suite (scan, dashboard, inspect, peers). */
function partsWanted(): Set<string> | undefined {
	const flag = process.argv.find(a => a.startsWith('--part='));
	return flag ? new Set(flag.slice('--part='.length).split(',')) : undefined;
}

export async function run({quick}: {quick: boolean}): Promise<void> {
	// Other work on the machine slows every figure here; the load average says how much there was.
	console.log(`(machine: ${os.cpus().length} cores, load average ${os.loadavg().map(v => v.toFixed(1)).join(' ')})`);
	const parts = partsWanted();
	const wanted = (part: string): boolean => !parts || parts.has(part);
	const scanCount = quick ? 200 : 1000;
	if (wanted('scan')) {
		await benchScan(scanCount, 'full');
		await benchScan(scanCount, 'small');
		await benchInspectFolder(await scanSet(scanCount, 'full'), scanCount);
	}

	if (wanted('dashboard')) {
		await benchDashboard(await scanSet(scanCount, 'full'), scanCount);
		if (defaultHeaderThreads() !== 2) {
			await benchDashboard(await scanSet(scanCount, 'full'), scanCount, 2);
		}
	}

	if (wanted('inspect')) {
		await benchInspect(quick);
	}

	if (wanted('peers')) {
		await benchPeerInputs(quick);
	}
}

// Child mode: `node --import tsx bench/core.ts --child-inspect <file> <repeats>`.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
	const index = process.argv.indexOf('--child-inspect');
	if (index !== -1) {
		await childInspect(process.argv[index + 1]!, Number(process.argv[index + 2] ?? 3));
	}
}
