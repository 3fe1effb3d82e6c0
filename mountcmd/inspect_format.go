package mountcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/template"
)

// inspectTemplate is inspect's --format template, run as docker's
// TemplateInspector runs it (docker/cli cli/command/inspect/inspector.go).
type inspectTemplate struct {
	typed *template.Template
	raw   *template.Template // the same, with missingkey=error
}

func parseInspectFormat(format string) (*inspectTemplate, error) {
	tmpl, _, err := parseFormat(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	raw, err := tmpl.Clone()
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return &inspectTemplate{typed: tmpl, raw: raw.Option("missingkey=error")}, nil
}

// execute writes the template's line for obj to out. It runs on obj itself
// first; if that fails, on obj's JSON decoded into maps, so that the keys
// inspect prints work too (.Descriptor.digest, .Descriptor.mediaType) where
// the Go field names differ, and a key that is nowhere is an error ("map has
// no entry for key"), not "<no value>". Nothing is written for obj on an error.
// docker sets missingkey=error on its one template at the first fallback, so
// that objects after it meet it on their typed run too; a copy keeps that
// from leaking here.
func (t *inspectTemplate) execute(out *bytes.Buffer, obj any) error {
	var b bytes.Buffer
	if err := t.typed.Execute(&b, obj); err != nil {
		raw, err := marshalJSON(obj, "")
		if err != nil {
			return fmt.Errorf("unable to read inspect data: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("unable to read inspect data: %w", err)
		}
		b.Reset()
		if err := t.raw.Execute(&b, v); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
	}
	out.Write(b.Bytes())
	out.WriteByte('\n')
	return nil
}
