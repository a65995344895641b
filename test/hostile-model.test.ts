// Every layer above the reader on every readable corpus file: model building (with and without
// alpha values), statistics, training metadata, findings and display formatting never throw
// anything but a LoraFileError, never report an internal error, and never pollute prototypes.
import assert from 'node:assert/strict';
import {mkdtemp, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {findTrainingIssues} from '../source/lora/findings.js';
import {parseTraining} from '../source/lora/metadata.js';
import {buildLoraModel, loadLoraModel} from '../source/lora/model.js';
import {LoraFileError, TensorReader, readHeader} from '../source/lora/safetensors.js';
import {sanitizeLine, sanitizeText} from '../source/lora/sanitize.js';
import {computeStats} from '../source/lora/stats.js';
import {presentTrainingGroups} from '../source/lora/training-fields.js';
import type {LoraModel, LoraStats, SafetensorsHeader} from '../source/lora/types.js';
import {type CorpusEntry, rawControlPattern, writeHostileCorpus} from './fixtures/hostile-corpus.js';

let dir: string;
let entries: CorpusEntry[];

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-model-corpus-'));
	entries = await writeHostileCorpus(dir);
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

/** Run one layer; only LoraFileError may escape, with a one-line reason. */
async function layer<T>(label: string, run: () => Promise<T> | T): Promise<T | undefined> {
	try {
		return await run();
	} catch (error) {
		if (error instanceof LoraFileError) {
			assert.doesNotMatch(error.reason, /\n/, `${label}: one-line reason`);
			return undefined;
		}

		const stack = error instanceof Error ? error.stack : String(error);
		assert.fail(`${label} threw a non-LoraFileError:\n${stack}`);
	}
}

async function withTimeout<T>(label: string, ms: number, work: Promise<T>): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${label}: took longer than ${ms} ms`)), ms);
	});
	try {
		return await Promise.race([work, timeout]);
	} finally {
		clearTimeout(timer);
	}
}

test('model, stats, training metadata and findings survive every readable corpus file', async t => {
	const slow: string[] = [];
	for (const entry of entries) {
		let header: SafetensorsHeader;
		try {
			header = await readHeader(entry.file);
		} catch {
			continue; // The reader's own behaviour is checked in hostile-corpus.test.ts.
		}

		const label = JSON.stringify(entry.name);
		const started = performance.now();
		await withTimeout(label, 60_000, (async () => {
			const model = await layer(`${label} buildLoraModel`, () => buildLoraModel(header));
			assert.ok(model, `${label}: a model`);
			for (const warning of model.warnings) {
				assert.doesNotMatch(warning, /internal error/, `${label}: ${warning}`);
				assert.doesNotMatch(warning, rawControlPattern, `${label}: model warnings are terminal-safe`);
			}

			let withAlphas: LoraModel | undefined;
			const reader = await layer(`${label} TensorReader.open`, async () => TensorReader.open(header));
			if (reader) {
				try {
					withAlphas = await layer(`${label} loadLoraModel`, async () => loadLoraModel(header, async name => reader.read(name)));
					for (const warning of withAlphas?.warnings ?? []) {
						assert.doesNotMatch(warning, /internal error/, `${label}: ${warning}`);
					}
				} finally {
					await reader.close();
				}
			}

			const stats: LoraStats | undefined = await layer(`${label} computeStats`, async () => computeStats(header, withAlphas ?? model));
			if (stats && entry.expect.nonFinite) {
				assert.ok(stats.nonFiniteValues > 0, `${label}: NaN/Inf counted`);
			}

			if (stats) {
				for (const module of stats.modules) {
					assert.ok(module.norm === null || Number.isFinite(module.norm), `${label}: ${module.name} norm ${module.norm} is finite or null`);
				}
			}

			const training = await layer(`${label} parseTraining`, () => parseTraining(header.metadata));
			assert.ok(training, `${label}: training metadata parsed`);
			const findings = await layer(`${label} findTrainingIssues`, () => findTrainingIssues({training, model: withAlphas ?? model, stats: stats ?? null}));
			for (const finding of findings ?? []) {
				assert.doesNotMatch(`${finding.title} ${finding.reason}`, rawControlPattern, `${label}: finding ${finding.id} is terminal-safe`);
			}

			const groups = await layer(`${label} presentTrainingGroups`, () => presentTrainingGroups(training));
			for (const group of groups ?? []) {
				for (const row of group.rows) {
					assert.doesNotMatch(sanitizeLine(row.value, 200), rawControlPattern, `${label}: ${row.field.key}`);
				}
			}

			for (const [key, value] of Object.entries(header.metadata)) {
				assert.doesNotMatch(sanitizeLine(key, 80), rawControlPattern, `${label}: key sanitised`);
				assert.doesNotMatch(sanitizeText(value.slice(0, 100_000)), rawControlPattern, `${label}: value of ${sanitizeLine(key, 40)} sanitised`);
			}
		})());
		const seconds = (performance.now() - started) / 1000;
		if (seconds > 2) {
			slow.push(`${entry.name} ${seconds.toFixed(1)} s`);
		}
	}

	if (slow.length > 0) {
		t.diagnostic(`slow files: ${slow.join(', ')}`);
	}

	const probe: Record<string, unknown> = {};
	assert.equal(probe['polluted'], undefined, 'Object.prototype not polluted');
	assert.equal(Object.getPrototypeOf(probe), Object.prototype);
});
