//! atProtocol: codecs shared with the atserver applet, plus the client.
