export { PlumbError, ValidationError } from './errors.js';
