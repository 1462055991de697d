"""Live inputs: network readers that hand raw bytes to the decoder and report transport faults.

Every live input is a reader thread (or an asyncio task, for HLS) that writes what it receives
into a BytePipe, which PyAV reads as a file-like object, and reports transport conditions
(TR 101 290, RTP sequence numbers, SRT statistics, HLS playlist rules) as TransportCondition
observations. Nothing here blocks without a timeout.
"""
