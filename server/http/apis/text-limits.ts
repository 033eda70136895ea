import { cutToBytes, utf8Length } from '../../engine/text-cut.ts';
import { RerankError } from '../../errors.ts';

export interface BoundedTexts {
  query: string;
  documents: string[];
}

/**
 * The query and documents as the core gets them: each at most `maxBytes` UTF-8 bytes
 * (`serving.maxDocumentBytes`). A longer text is cut to that many bytes, at a whole character and at the
 * last word end in it (far more than any maxLength keeps); with `truncate: false` it is a 413 naming it
 * (`query`, or `<documentsField>.<i>`), as the pair would be over maxLength anyway. The texts echoed to
 * the client (`return_text`, `return_documents`) are the caller's, uncut.
 */
export function boundTextBytes(texts: BoundedTexts & { truncate: boolean }, maxBytes: number, documentsField: string): BoundedTexts {
  const bound = (text: string, field: string): string => {
    if (text.length * 3 <= maxBytes) return text;
    const bytes = utf8Length(text);
    if (bytes <= maxBytes) return text;
    if (!texts.truncate) {
      throw new RerankError(
        'payload_too_large',
        `${field}: ${bytes} bytes, over the limit of ${maxBytes} (serving.maxDocumentBytes), and truncate is false`,
        { field },
      );
    }
    return cutToBytes(text, maxBytes);
  };
  return {
    query: bound(texts.query, 'query'),
    documents: texts.documents.map((document, index) => bound(document, `${documentsField}.${index}`)),
  };
}
