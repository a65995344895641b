// Imports every job module for its side effect of registering its kind (see ../registry.ts).
import './decompose.js';
import './stats.js';
import './hash.js';
import './resize-write.js';
import './base-norms.js';
import './meta-save.js';
