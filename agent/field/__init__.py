"""The field side of the runtime: pollers that read every bus into Readings, the process image
(latest value per point), report-by-exception, digital I/O and GPS as points, and the
actuator that writes outputs and reads them back."""
