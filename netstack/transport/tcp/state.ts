// The states of a connection (RFC 9293 §3.3.2) the endpoint moves through; LISTEN and SYN-SENT are not
// endpoints here (the forwarder's pending request and connect.ts's ActiveOpen stand for them).
export type TcpState =
  | 'SYN-RCVD'
  | 'ESTABLISHED'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'CLOSE-WAIT'
  | 'CLOSING'
  | 'LAST-ACK'
  | 'TIME-WAIT'
  | 'CLOSED';
