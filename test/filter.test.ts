import assert from 'node:assert/strict';
import {test} from 'node:test';
import {matchFilter, parseFilter, tokenize, type CanonicalField, type FilterSubject} from '../source/state/filter.js';

function subject(fields: Partial<Record<CanonicalField, string | number>>, metadata: Record<string, string> = {}, extra: {tags?: string[]; flags?: Partial<FilterSubject['flags']>} = {}): FilterSubject {
	return {
		field: name => fields[name],
		metadata,
		tags: () => extra.tags ?? [],
		haystack: () => [fields.name ?? '', ...Object.entries(metadata).flat()].join('\n').toLowerCase(),
		flags: {new: false, marked: false, failed: false, loading: false, ...extra.flags},
	};
}

test('tokenize keeps quoted phrases together and drops the quotes', () => {
	assert.deepEqual(tokenize('  a  "b c"  name:"my lora" '), ['a', 'b c', 'name:my lora']);
	assert.deepEqual(tokenize(''), []);
	assert.deepEqual(tokenize('""'), ['']);
});

test('field queries parse into field, operator and value; aliases map to canonical fields', () => {
	const parsed = parseFilter('optimizer:prodigy rank>=32 arch:sdxl dim<=8 -tag:solo alpha=16 epoch!=3');
	assert.deepEqual(parsed.errors, []);
	assert.deepEqual(
		parsed.terms.map(t => (t.kind === 'field' ? [t.field, t.op, t.value, t.number, t.negate] : t)),
		[
			['optimizer', ':', 'prodigy', null, false],
			['rank', '>=', '32', 32, false],
			['arch', ':', 'sdxl', null, false],
			['rank', '<=', '8', 8, false],
			['tag', ':', 'solo', null, true],
			['alpha', '=', '16', 16, false],
			['epoch', '!=', '3', 3, false],
		],
	);
});

test('free text, negated text and flags', () => {
	const parsed = parseFilter('Anime -bad is:new -is:failed');
	assert.deepEqual(parsed.terms, [
		{kind: 'text', text: 'anime', negate: false},
		{kind: 'text', text: 'bad', negate: true},
		{kind: 'flag', flag: 'new', negate: false},
		{kind: 'flag', flag: 'failed', negate: true},
	]);
});

test('bad terms are reported and dropped, the rest still filters', () => {
	const parsed = parseFilter('rank>=abc size<lots is:weird arch: name:x');
	assert.equal(parsed.terms.length, 1);
	assert.equal(parsed.errors.length, 4);
	assert.match(parsed.errors[0]!, /rank>=abc: >= needs a number/);
	assert.match(parsed.errors[1]!, /100mb/);
	assert.match(parsed.errors[2]!, /is:new/);
	assert.match(parsed.errors[3]!, /needs a value/);
});

test('numeric comparisons on numeric fields', () => {
	const file = subject({rank: 32, alpha: 16, epoch: 5, lr: 0.0001});
	const yes = ['rank>=32', 'rank>16', 'rank:32', 'rank=32', 'rank<=32', 'alpha<32', 'epoch!=4', 'lr:1e-4', 'lr<0.001', 'dim>=32'];
	const no = ['rank>32', 'rank<32', 'rank:16', 'alpha>=17', 'epoch!=5', 'lr>0.001'];
	for (const query of yes) {
		assert.equal(matchFilter(parseFilter(query), file), true, query);
	}

	for (const query of no) {
		assert.equal(matchFilter(parseFilter(query), file), false, query);
	}
});

test('size accepts units', () => {
	const file = subject({size: 150 * 1024 * 1024});
	assert.equal(matchFilter(parseFilter('size>100mb'), file), true);
	assert.equal(matchFilter(parseFilter('size<100mb'), file), false);
	assert.equal(matchFilter(parseFilter('size<1g'), file), true);
	assert.equal(matchFilter(parseFilter('size>=157286400'), file), true);
});

test('string fields match case-insensitive substrings; = is exact', () => {
	const file = subject({optimizer: 'prodigyopt.Prodigy(d_coef=2)', arch: 'sdxl', name: 'My-LoRA-000004.safetensors'});
	assert.equal(matchFilter(parseFilter('optimizer:prodigy'), file), true);
	assert.equal(matchFilter(parseFilter('optimizer:adam'), file), false);
	assert.equal(matchFilter(parseFilter('arch:SDXL'), file), true);
	assert.equal(matchFilter(parseFilter('arch=sd'), file), false);
	assert.equal(matchFilter(parseFilter('arch=sdxl'), file), true);
	assert.equal(matchFilter(parseFilter('name:lora-0000'), file), true);
});

test('unknown fields fall back to raw metadata keys, with and without the ss_ prefix', () => {
	const file = subject({}, {ss_seed: '42', 'modelspec.author': 'Someone', custom_key: 'Hello'});
	assert.equal(matchFilter(parseFilter('seed:42'), file), true);
	assert.equal(matchFilter(parseFilter('ss_seed=42'), file), true);
	assert.equal(matchFilter(parseFilter('seed>40'), file), true);
	assert.equal(matchFilter(parseFilter('author:someone'), file), true);
	assert.equal(matchFilter(parseFilter('custom_key:hell'), file), true);
	assert.equal(matchFilter(parseFilter('missing:x'), file), false);
	assert.equal(matchFilter(parseFilter('-missing:x'), file), true);
});

test('free text searches name and every metadata value; all terms must match', () => {
	const file = subject({name: 'aria.safetensors'}, {ss_training_comment: 'trained on watercolor paintings'});
	assert.equal(matchFilter(parseFilter('watercolor'), file), true);
	assert.equal(matchFilter(parseFilter('aria watercolor'), file), true);
	assert.equal(matchFilter(parseFilter('aria oil'), file), false);
	assert.equal(matchFilter(parseFilter('-watercolor'), file), false);
	assert.equal(matchFilter(parseFilter(''), file), true);
});

test('tags and flags', () => {
	const file = subject({}, {}, {tags: ['1girl', 'solo', 'red eyes'], flags: {new: true, marked: false}});
	assert.equal(matchFilter(parseFilter('tag:red'), file), true);
	assert.equal(matchFilter(parseFilter('tag=red'), file), false);
	assert.equal(matchFilter(parseFilter('tag="red eyes"'), file), true);
	assert.equal(matchFilter(parseFilter('-tag:solo'), file), false);
	assert.equal(matchFilter(parseFilter('is:new'), file), true);
	assert.equal(matchFilter(parseFilter('is:marked'), file), false);
	assert.equal(matchFilter(parseFilter('-is:marked'), file), true);
});
