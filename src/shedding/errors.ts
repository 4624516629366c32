import { InvalidInputError } from '../core/errors.js';

/** A call passed something the shedder or gate cannot use (unknown priority or class, NaN deadline). Code `INVALID_INPUT`. */
export class InvalidAdmissionError extends InvalidInputError {
  constructor(message: string) {
    super(message, { captureStack: false });
  }
}
