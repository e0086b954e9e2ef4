"""The Textual app. Subscribes to engine events, sends commands; runs no git or processes itself."""
